"""Packaging (issue 15, item 10): the wheel carries the example registry; the light client
install (the wheel without its dependencies, plus requirements/client.txt) pulls none of the
server's libraries and still fetches from a real hub over mTLS; the command line says it
needs the full install instead of a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.hubs import RunningHub, start_hub

from certhub.hub.demo.world import DemoWorld
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_engine, sqlite_url

REPO = Path(__file__).resolve().parents[1]
CLIENT_REQUIREMENTS = REPO / "requirements" / "client.txt"
# What the light install must not bring (the server's storage, cache, metrics and HTTP).
SERVER_DISTRIBUTIONS = {
    "sqlalchemy",
    "alembic",
    "psycopg",
    "psycopg-binary",
    "redis",
    "hiredis",
    "prometheus-client",
    "aiohttp",
    "jinja2",
}
SERVER_MODULES = ["sqlalchemy", "alembic", "psycopg", "redis", "prometheus_client", "aiohttp"]
# Building the wheel, a fresh environment and its five dependencies from the package index
# on a busy machine.
INSTALL_TIMEOUT_SECONDS = 600


def _requirements() -> list[str]:
    return [
        line.strip()
        for line in CLIENT_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_the_client_requirements_are_the_projects_own_specifiers() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    assert set(_requirements()) <= set(dependencies), "keep requirements/client.txt in step"
    names = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in _requirements()}
    assert not names & SERVER_DISTRIBUTIONS


# A fetch as a window's system would write it, run in another interpreter.
_WINDOW_SCRIPT = """
import json, sys
from pathlib import Path
from certhub.core.rpc.client import ClientTLS, HubClient
address, ca, cert, key, item = sys.argv[1:6]
with HubClient.connect(address, ClientTLS(ca=Path(ca), cert=Path(cert), key=Path(key))) as c:
    fetched = c.fetch(
        id_type="USCC", holder_id="91350102MA2Y0001X6", service_item=item, case_number="GL-PKG-1"
    )
heavy = sorted(m for m in sys.argv[6:] if m in sys.modules)
print(json.dumps({"audit_index": fetched.audit_index, "heavy": heavy}))
"""


@pytest.fixture
def hub(tmp_path: Path, world: DemoWorld) -> Iterator[RunningHub]:
    engine = make_engine(sqlite_url(tmp_path / "hub"))
    (tmp_path / "hub").mkdir(exist_ok=True)
    migrate.upgrade(engine)
    running = start_hub(tmp_path / "hub", engine, world)
    yield running
    running.server.stop(grace=None)
    running.hub.close()
    engine.dispose()


def _window_argv(hub: RunningHub, world: DemoWorld) -> list[str]:
    tls = hub.tls_for("gulou-service-centre")
    item = world.item_by_name("食品经营许可（新办）").code
    return [hub.address, str(tls.ca), str(tls.cert), str(tls.key), item]


def test_hub_client_works_with_the_server_libraries_blocked(
    hub: RunningHub, world: DemoWorld
) -> None:
    """In this environment, with every server library made unimportable."""
    blocker = "import sys\nfor m in sys.argv[6:]: sys.modules[m] = None\n"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            blocker + _WINDOW_SCRIPT,
            *_window_argv(hub, world),
            *SERVER_MODULES,
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["audit_index"] >= 0


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel, built from the files the Dockerfile's build context holds."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "docs/registry.example.toml"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "certhub",
        source / "certhub",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(wheels), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("certhub-*.whl")
    return wheel


@pytest.mark.slow
def test_the_light_install_fetches_without_the_server_libraries(
    tmp_path: Path, hub: RunningHub, world: DemoWorld
) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = archive.read("certhub/hub/registry.example.toml")
    assert packaged == (REPO / "docs" / "registry.example.toml").read_bytes()
    assert "certhub/v1/intake_pb2.py" in names
    # One installed name (issue 15 item 10): no generic top-level package such as `hub` or
    # `core` that another distribution could also install.
    top_level = {n.split("/")[0] for n in names if not n.startswith("certhub-")}
    assert top_level == {"certhub"}, top_level
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "light"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    for step in (["--no-deps", str(wheel)], ["-r", str(CLIENT_REQUIREMENTS)]):
        done = subprocess.run(
            [*pip, *step],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "certhub" in installed
    assert not installed & SERVER_DISTRIBUTIONS, installed & SERVER_DISTRIBUTIONS

    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    window = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            _WINDOW_SCRIPT,
            *_window_argv(hub, world),
            *SERVER_MODULES,
        ],
        cwd=tmp_path,  # not the checkout: the installed package only
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert window.returncode == 0, window.stderr
    answer = json.loads(window.stdout)
    assert answer["audit_index"] >= 0
    assert answer["heavy"] == []

    example = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from importlib.resources import files; "
            "print(len((files('certhub.hub') / 'registry.example.toml').read_text('utf-8')))",
        ],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert example.returncode == 0, example.stderr
    assert int(example.stdout) == len(packaged.decode("utf-8"))

    cli = subprocess.run(
        [str(venv / "bin" / "certhub"), "health"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 1
    assert "needs the full install" in cli.stderr
    assert "Traceback" not in cli.stderr
