"""A failed command prints one line with a hint and a documented exit status; --verbose adds
the traceback; a closed pipe ends quietly (issue 15, item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certhub.hub.cli import failures

REPO = Path(__file__).resolve().parents[3]


def _certhub(*args: str, cwd: Path, stdout: int | None = subprocess.PIPE) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from certhub.hub.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert "(hint: " in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgres://certhub@127.0.0.1/certhub", "postgresql+psycopg://"),
        ("sqlite:////nonexistent-dir/certhub.db", "cannot use the database"),
        ("postgresql+psycopg://certhub@127.0.0.1:1/certhub", "cannot use the database"),
    ],
)
@pytest.mark.slow
def test_database_problems_are_one_line(tmp_path: Path, url: str, says: str) -> None:
    for command in (["db", "status"], ["stats"]):
        status, stderr = _certhub(*command, "--db", url, cwd=tmp_path)
        assert status == failures.EXIT_FAILED, stderr
        line = _one_line(stderr)
        assert line.startswith(f"certhub {command[0]}: ")
        assert says in line


@pytest.mark.slow
def test_verbose_adds_the_traceback(tmp_path: Path) -> None:
    status, stderr = _certhub("--verbose", "db", "status", "--db", "postgres://x@h/d", cwd=tmp_path)
    assert status == failures.EXIT_FAILED
    assert "Traceback" in stderr
    assert "NoSuchModuleError" in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("certhub db: ")


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.slow
def test_a_schema_never_created_is_named_as_such(tmp_path: Path, workers: str) -> None:
    """One process finds out in build_hub, the supervisor of several before forking: same line."""
    data = tmp_path / "data"
    assert _certhub("init", "--data-dir", str(data), cwd=tmp_path)[0] == 0
    status, stderr = _certhub(
        *("serve", "--workers", workers, "--address", "127.0.0.1:0", "--data-dir", str(data)),
        cwd=tmp_path,
    )
    assert status == failures.EXIT_FAILED
    assert "at None" not in stderr
    assert "no certhub schema yet" in stderr
    assert "certhub db upgrade" in stderr


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`certhub ... | head` once head has exited: no BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        status, stderr = _certhub("config", "show", cwd=tmp_path, stdout=write)
    finally:
        os.close(write)
    assert status == failures.EXIT_BROKEN_PIPE, stderr
    assert "BrokenPipeError" not in stderr
    assert "Traceback" not in stderr


def test_an_unexpected_error_says_it_is_a_bug() -> None:
    failure = failures.describe(KeyError("boom"))
    assert failure.status == failures.EXIT_INTERNAL
    assert "internal error KeyError" in failure.line("stats")
    assert "--verbose stats" in failure.line("stats")


@pytest.mark.slow
def test_one_shot_commands_do_not_narrate_on_stderr(tmp_path: Path) -> None:
    """No "registry version N loaded" (or cache, health) lines on every command (item 8)."""
    registry = REPO / "docs" / "registry.example.toml"
    for step in (["db", "upgrade"], ["registry", "apply", str(registry)], ["stats"]):
        status, stderr = _certhub(*step, "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
        assert status == 0, stderr
        assert stderr == "", (step, stderr)
    status, stderr = _certhub(
        "--verbose", "stats", "--data-dir", str(tmp_path / "data"), cwd=tmp_path
    )
    assert "registry version 1 loaded" in stderr
