"""`certhub serve --workers 2` start-up failures: one clear line and exit 1, never a restart
loop or a traceback from each worker."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.served import REPO, prepare_deployment

from certhub.hub.demo.world import DemoWorld
from certhub.hub.store.engine import make_engine, sqlite_url

# Two workers import and build a hub, fail to bind, and the supervisor stops: seconds.
EXIT_TIMEOUT = 60.0


@pytest.mark.slow
def test_a_port_taken_by_another_program_stops_the_supervisor(
    tmp_path: Path, world: DemoWorld
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    prepare_deployment(data, engine, world.registry_toml())
    engine.dispose()
    with socket.socket() as squatter:  # no SO_REUSEPORT: the workers cannot share it
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "certhub.hub.cli.main", "serve", "--data-dir", str(data)),
                *("--address", f"127.0.0.1:{port}", "--workers", "2"),
            ],
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr
    assert "before any worker could serve: giving up" in done.stderr
    assert "Traceback" not in done.stderr
    assert "certhub serving on" not in done.stderr
    assert done.stdout == ""
