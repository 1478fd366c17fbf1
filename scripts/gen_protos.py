"""Generate the Python protobuf and gRPC modules from proto/ into the `certhub.v1` package.

One script, committed output: `tests/test_generated_stubs.py` regenerates into a temporary
directory and fails when the committed files differ.

    python scripts/gen_protos.py            # write into the repository
    python scripts/gen_protos.py --out DIR  # write elsewhere (the staleness test uses this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def generate(out: Path) -> list[Path]:
    """Compile every .proto under proto/ into `out`; return the written files."""
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # certhub/ itself is the project's package (hub, core, signing, cache, adapters beside
    # v1): only v1 is generated, so a regeneration never touches the hand-written __init__.
    stubs = out / "certhub" / "v1"
    init = stubs / "__init__.py"
    init.write_text('"""Generated from proto/ by scripts/gen_protos.py; do not edit."""\n')
    return [init, *sorted(stubs.glob("*_pb2*.py*"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
