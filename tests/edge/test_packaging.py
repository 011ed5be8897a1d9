"""A non-editable install (`pip install .`, the Docker image, scripts/run)
ships envoy.yaml as a file of its own, the same as the repository's, along
with the descriptor and the web client that rendering points Envoy at, and
not devsupport/, which only tests and the benchmark use."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.edge.edge_support import ROOT

NOT_PACKAGED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    "*.egg-info",
    "build",
    ".*_cache",
    ".atomchat",
    "bench",
    "tests",
)


def test_the_wheel_carries_envoy_yaml_descriptor_and_web_client(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_PACKAGED)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheel"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("atomchat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        envoy_yaml = archive.getinfo("atomchat_server/edge/envoy.yaml")
        # A regular file (not a link to ../../envoy.yaml) with the same text.
        assert envoy_yaml.external_attr >> 28 != 0o12
        assert archive.read(envoy_yaml) == (ROOT / "envoy.yaml").read_bytes()
        names = set(archive.namelist())
    assert "atomchat/v1/atomchat_descriptor.binpb" in names
    assert not [name for name in names if name.startswith("devsupport/")], "tests' and bench's"
    assert {f"atomchat_server/webapp/{name}" for name in ("index.html", "app.js", "app.css")} <= (
        names
    )
