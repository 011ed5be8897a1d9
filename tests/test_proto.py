"""The contract's tooling: generated code is fresh, and buf lint passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grpc_tools import protoc

from scripts.generate_proto import PROTO_DIR, include_dirs

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "web" / "node_modules" / ".bin" / "buf"


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes_with_the_standard_rules(tmp_path: Path) -> None:
    assert BUF.exists(), "buf is missing: run `npm ci --prefix web` (scripts/test does)"
    image = tmp_path / "image.binpb"
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    built = protoc.main(
        [
            "protoc",
            *(f"-I{d}" for d in include_dirs()),
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={image}",
            *sources,
        ]
    )
    assert built == 0
    result = subprocess.run(
        [str(BUF), "lint", str(image), "--path", "atomchat/v1", "--config", str(ROOT / "buf.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
