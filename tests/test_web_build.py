"""The checked-in web client and /docs (web/dist) are exactly what
web/build.sh makes from the checked-in sources and lockfile, built from
scratch elsewhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
# What the build reads from the Python side: the descriptor set and the OpenAPI document.
GENERATED = (
    Path("generated/atomchat/v1/atomchat_descriptor.binpb"),
    Path("generated/openapi.json"),
)
BUILD_OUTPUTS = {WEB / "node_modules", WEB / "dist", WEB / "src" / "gen"}


def _build_outputs(folder: str, names: list[str]) -> set[str]:
    return {name for name in names if Path(folder) / name in BUILD_OUTPUTS}


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.timeout(600)
def test_checked_in_web_dist_is_what_the_build_makes(tmp_path: Path) -> None:
    assert shutil.which("npm"), "npm is missing: install Node.js 20+ (scripts/test does)"
    web = tmp_path / "web"
    shutil.copytree(WEB, web, ignore=_build_outputs)
    for generated in GENERATED:
        (tmp_path / generated).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / generated, tmp_path / generated)

    _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], web)
    _run(["bash", "build.sh"], web)

    built, checked_in = _files(web / "dist"), _files(WEB / "dist")
    assert sorted(built) == [
        "app.css",
        "app.js",
        "docs.html",
        "docs.js",
        "index.html",
        "openapi.json",
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    ]
    stale = sorted(
        name for name in built.keys() | checked_in.keys() if built.get(name) != checked_in.get(name)
    )
    assert stale == [], f"web/dist is stale, run `npm ci && ./build.sh` in web/: {stale}"
