"""`certhub demo --data-dir` as the guides write it: a relative folder, run twice, and a kept
demo dir whose adapters reach `certhub serve --data-dir` (issue 15, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from certhub.hub.runtime import DEFAULT_ADDRESS

REPO = Path(__file__).resolve().parents[3]


def _certhub(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "certhub.hub.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_relative_data_dir_twice_and_adapters_point_at_the_served_port(tmp_path: Path) -> None:
    for run in (1, 2):
        done = _certhub(tmp_path, "demo", "--data-dir", "demo-data")
        assert done.returncode == 0, f"run {run}: {done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
        assert "VALID -> REVOKED" in done.stdout
    for config in (tmp_path / "demo-data" / "adapters").glob("*/*.toml"):
        hub = tomllib.loads(config.read_text(encoding="utf-8"))["hub"]
        assert hub["address"] == DEFAULT_ADDRESS, config
        assert Path(hub["ca"]).is_file()


@pytest.mark.slow
def test_a_folder_that_is_not_a_demo_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    done = _certhub(tmp_path, "demo", "--data-dir", "mine")
    assert done.returncode == 1
    assert "is not empty" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "keep me"
