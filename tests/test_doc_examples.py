"""The documents' examples run as written against a live hub (tests/support/docrunner.py):
the README's "Run a hub by hand" and its Python example, the operations guide's first steps,
the API guide's commands and Python examples. A doc that drifts from the code fails here
(issue 15, item 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.docrunner import REPO, run_document

pytestmark = pytest.mark.slow
DOCS = REPO / "docs"


def _reader(tmp_path: Path) -> Path:
    """A working directory like a checkout's: the README's commands name docs/ files."""
    work = tmp_path / "reader"
    (work / "docs").mkdir(parents=True)
    shutil.copy(DOCS / "registry.example.toml", work / "docs")
    return work


def test_readme_runs_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = run_document(REPO / "README.md", _reader(tmp_path))
    assert "certhub serve --address 127.0.0.1:0" in session.ran
    assert any(step.startswith("python block README.md") for step in session.ran)
    printed = capsys.readouterr().out
    # What the README says its example prints.
    assert "M01 营业执照 missing" in printed
    assert "M02 经营场所使用证明 paper" in printed


def test_api_guide_runs_as_written(tmp_path: Path) -> None:
    session = run_document(DOCS / "api.md", _reader(tmp_path))
    assert sum(step.startswith("python block api.md") for step in session.ran) >= 15


def test_operations_guide_runs_as_written(tmp_path: Path) -> None:
    session = run_document(DOCS / "operations.md", _reader(tmp_path))
    for command in ("certhub health", "certhub config show", "certhub stats --data-dir demo-data"):
        assert command in session.ran


def test_readme_says_how_to_run_the_merkle_vector_tests() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    module = (REPO / "tests" / "signing" / "test_merkle.py").read_text(encoding="utf-8")
    assert 'VECTORS_ENV = "CERTHUB_MERKLE_VECTORS"' in module
    assert "CERTHUB_MERKLE_VECTORS=" in readme
    assert "transparency-dev/merkle" in readme
