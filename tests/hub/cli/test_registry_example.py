"""`certhub registry example`: the documented example registry from the installed package, so
a wheel install has it without the repository's docs/ (issue 15, item 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certhub.hub.cli import failures

REPO = Path(__file__).resolve().parents[3]
DOCUMENTED = REPO / "docs" / "registry.example.toml"


def _certhub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from certhub.hub.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_prints_the_documented_example(tmp_path: Path) -> None:
    done = _certhub("registry", "example", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == DOCUMENTED.read_text(encoding="utf-8")


@pytest.mark.slow
def test_writes_a_new_file_that_validates_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "registry.toml"
    done = _certhub("registry", "example", "--output", str(target), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == DOCUMENTED.read_text(encoding="utf-8")
    checked = _certhub("registry", "apply", "--check", str(target), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "valid (" in checked.stdout

    target.write_text("# mine\n", encoding="utf-8")
    again = _certhub("registry", "example", "--output", str(target), cwd=tmp_path)
    assert again.returncode == failures.EXIT_FAILED
    assert "exists: not overwritten" in again.stderr
    assert target.read_text(encoding="utf-8") == "# mine\n"
