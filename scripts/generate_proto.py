"""Generate Python code, type stubs, Envoy's descriptor set and the OpenAPI
document (scripts/generate_openapi.py) from proto/.

    python scripts/generate_proto.py          # rewrite generated/
    python scripts/generate_proto.py --check  # exit 1 if generated/ is stale

generated/ is checked in; the test run calls --check so that a proto change
without regenerated code fails.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OPENAPI_SCRIPT = ROOT / "scripts" / "generate_openapi.py"
GENERATED_DIR = ROOT / "generated"
DESCRIPTOR_NAME = "atomchat/v1/atomchat_descriptor.binpb"
# Envoy's transcoder renders error details (convert_grpc_status) only for the
# types in its descriptor set: add google.rpc.Status and the details we send.
ERROR_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def include_dirs() -> list[Path]:
    well_known = Path(str(resources.files("grpc_tools") / "_proto"))
    import google.api.annotations_pb2 as annotations

    googleapis = Path(annotations.__file__).resolve().parent.parent.parent
    return [PROTO_DIR, well_known, googleapis]


def generate(out_dir: Path) -> None:
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    includes = [f"-I{d}" for d in include_dirs()]
    descriptor = out_dir / DESCRIPTOR_NAME
    descriptor.parent.mkdir(parents=True, exist_ok=True)
    plugins = [
        f"--plugin=protoc-gen-{name}={Path(sys.executable).parent / ('protoc-gen-' + name)}"
        for name in ("mypy", "mypy_grpc")
    ]
    args = [
        "grpc_tools.protoc",
        *includes,
        *plugins,
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    descriptor_args = [
        "grpc_tools.protoc",
        *includes,
        f"--descriptor_set_out={descriptor}",
        "--include_imports",
        *sources,
        *ERROR_PROTOS,
    ]
    if protoc.main(descriptor_args) != 0:
        raise SystemExit("protoc failed on the descriptor set")
    for package in {p.parent for p in out_dir.rglob("*_pb2.py")} | {out_dir / "atomchat"}:
        (package / "py.typed").touch()
    openapi = [sys.executable, str(OPENAPI_SCRIPT), "--output", str(out_dir / "openapi.json")]
    subprocess.run(openapi, check=True)


def _stale_files(expected: Path, actual: Path) -> list[str]:
    stale: list[str] = []
    comparison = filecmp.dircmp(expected, actual, ignore=["__pycache__"])

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        stale.extend(prefix + name for name in cmp.left_only + cmp.right_only)
        for name in cmp.common_files:
            if not filecmp.cmp(Path(cmp.left) / name, Path(cmp.right) / name, shallow=False):
                stale.append(prefix + name)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(comparison, "")
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated/ is stale")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        fresh.mkdir()
        generate(fresh)
        if options.check:
            stale = _stale_files(fresh, GENERATED_DIR) if GENERATED_DIR.exists() else ["generated/"]
            if stale:
                print("generated/ is stale; run scripts/generate_proto.py:", *stale, sep="\n  ")
                return 1
            return 0
        shutil.rmtree(GENERATED_DIR, ignore_errors=True)
        shutil.copytree(fresh, GENERATED_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
