"""The committed stubs in certhub/v1 are exactly what scripts/gen_protos.py makes from proto/:
regenerated into a temporary directory and compared byte for byte."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "certhub" / "v1"


def _generate(out: Path) -> list[Path]:
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written: list[Path] = module.generate(out)
    return written


def test_committed_stubs_match_the_protos_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates stubs")
    # protoc finds the mypy-protobuf plugins (protoc-gen-mypy) on PATH, next to this Python,
    # also when the virtual environment is not activated (CI runs .venv/bin/python -m pytest).
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    written = _generate(tmp_path)
    generated = {p.relative_to(tmp_path / "certhub" / "v1") for p in written}
    committed = {
        p.relative_to(COMMITTED)
        for p in COMMITTED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert generated == committed, (
        "generated and committed file sets differ; run scripts/gen_protos.py and commit: "
        f"missing {sorted(map(str, generated - committed))}, "
        f"extra {sorted(map(str, committed - generated))}"
    )
    stale = sorted(
        str(name)
        for name in generated
        if (tmp_path / "certhub" / "v1" / name).read_bytes() != (COMMITTED / name).read_bytes()
    )
    assert not stale, f"stale stubs {stale}: run `python scripts/gen_protos.py` and commit"
    assert len(generated) > 1  # the protos produced something
