"""The Dockerfile: multi-stage, runs as an unprivileged user, and its HEALTHCHECK command
(run here exactly as written, against a real hub) says SERVING, then UNREACHABLE once the hub
is gone. Where a Docker daemon answers, the image is built and run: it turns healthy, serves
as a non-root uid and stops cleanly (issue 15, item 11)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.served import REPO, prepare_deployment, serve

from certhub.hub.demo.world import DemoWorld
from certhub.hub.pki import PkiPaths, issue_client_certificate
from certhub.hub.store.engine import make_engine, sqlite_url

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text, pending = pending + line, ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(stage, keyword, " ".join(args.split())))
    return found


def final_stage(found: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in found)
    return [i for i in found if i.stage == last]


def healthcheck_argv(found: list[Instruction]) -> list[str]:
    (check,) = [i for i in final_stage(found) if i.keyword == "HEALTHCHECK"]
    match = re.search(r"\bCMD (\[.*\])$", check.args)
    assert match, f"HEALTHCHECK should use the exec form: {check.args}"
    argv: list[str] = json.loads(match.group(1))
    return argv


def image_env(found: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in final_stage(found):
        if i.keyword == "ENV":
            for pair in re.findall(r"(\w+)=(\S+)", i.args):
                env[pair[0]] = pair[1]
    return env


def test_multi_stage_non_root_with_a_certhub_health_check() -> None:
    found = instructions(DOCKERFILE)
    froms = [i for i in found if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert froms[0].args.endswith(" AS build")
    runtime = final_stage(found)
    # Only the built environment crosses into the image: no sources, no build tools.
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/certhub /opt/certhub"]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must drop root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert healthcheck_argv(found)[:2] == ["certhub", "health"]
    (entrypoint,) = [json.loads(i.args) for i in runtime if i.keyword == "ENTRYPOINT"]
    (command,) = [json.loads(i.args) for i in runtime if i.keyword == "CMD"]
    assert [*entrypoint, *command][:2] == ["certhub", "serve"]
    assert image_env(found)["CERTHUB_DATA_DIR"] == "/var/lib/certhub"


def test_the_build_context_never_takes_a_data_dir_or_an_environment() -> None:
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "**"  # everything excluded, then the few inputs allowed back
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not allowed & {"certhub-data", ".venv", ".git", "tests", "bench"}
    for i in instructions(DOCKERFILE):
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            *sources, _target = i.args.split()
            for source in sources:
                assert source in allowed, f"COPY {source} is excluded by .dockerignore"
                assert (REPO / source).exists(), source


# Docker's own --timeout for the check: the command must answer well within it.
def _healthcheck_timeout(found: list[Instruction]) -> float:
    (check,) = [i for i in final_stage(found) if i.keyword == "HEALTHCHECK"]
    match = re.search(r"--timeout=(\d+)s", check.args)
    assert match
    return float(match.group(1))


@pytest.mark.slow
def test_the_healthcheck_command_probes_a_real_hub(tmp_path: Path, world: DemoWorld) -> None:
    found = instructions(DOCKERFILE)
    argv = healthcheck_argv(found)
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(sqlite_url(data))
    prepare_deployment(data, engine, world.registry_toml())
    engine.dispose()
    # What `certhub init --client lb-health` issues: health needs no registered principal.
    issue_client_certificate(PkiPaths(data), "lb-health")
    served = serve(data, f"sqlite:///{data / 'certhub.db'}", workers=1)
    # The image's environment, with this test's data dir, and a CERTHUB_ADDRESS as an
    # operator might set for serve (0.0.0.0): the check's explicit address must win.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTHUB_")}
    env |= {k: v for k, v in image_env(found).items() if k.startswith("CERTHUB_")}
    env |= {"CERTHUB_DATA_DIR": str(data), "CERTHUB_ADDRESS": "0.0.0.0:1", "PYTHONPATH": str(REPO)}
    port = served.address.rsplit(":", 1)[1]
    assert "127.0.0.1:50051" in argv
    command = [
        *(sys.executable, "-c", "import sys; from certhub.hub.cli import main; sys.exit(main())"),
        *(f"127.0.0.1:{port}" if word == "127.0.0.1:50051" else word for word in argv[1:]),
    ]
    timeout = _healthcheck_timeout(found)
    try:
        started = time.monotonic()
        done = _run(command, env, tmp_path)
        assert (done.returncode, done.stdout) == (0, "(server): SERVING\n"), done.stderr
        # Start-up of a cold interpreter on a busy machine is most of it; Docker allows this.
        assert time.monotonic() - started < timeout * 3
    finally:
        assert served.stop() == 0
    gone = _run(command, env, tmp_path)
    assert gone.returncode == 2, gone.stdout + gone.stderr  # UNREACHABLE: unhealthy


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


# Building installs every dependency from the index: minutes on a cold cache.
BUILD_TIMEOUT_SECONDS = 1200
HEALTHY_TIMEOUT_SECONDS = 180.0


@pytest.mark.slow
@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon answers here")
def test_the_image_builds_turns_healthy_and_stops_cleanly() -> None:
    tag = f"certhub-test:{uuid.uuid4().hex[:12]}"
    volume = f"certhub-test-{uuid.uuid4().hex[:12]}"
    name = f"certhub-test-{uuid.uuid4().hex[:12]}"

    def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    built = docker("build", "-t", tag, str(REPO), timeout=BUILD_TIMEOUT_SECONDS)
    assert built.returncode == 0, built.stderr[-4000:]
    mount = f"{volume}:/var/lib/certhub"
    try:
        # Once, as docs/operations.md says: the packaged example registry, PKI, schema.
        prepared = docker(
            *("run", "--rm", "-v", mount, "--entrypoint", "sh", tag, "-c"),
            "set -e; certhub registry example --output /tmp/registry.toml; "
            "certhub init --registry /tmp/registry.toml; certhub db upgrade; "
            "certhub registry apply /tmp/registry.toml",
        )
        assert prepared.returncode == 0, prepared.stderr
        started = docker(
            *("run", "-d", "--name", name, "-v", mount, "-e", "CERTHUB_WORKERS=2", tag)
        )
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
        status = ""
        while time.monotonic() < deadline and status != "healthy":
            time.sleep(2)
            status = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        assert status == "healthy", docker("logs", name).stderr[-4000:]
        uid = docker("exec", name, "id", "-u").stdout.strip()
        assert uid not in ("", "0")
        assert docker("logs", name).stdout == ""  # logs are JSON lines on stderr
        stopped = docker("stop", "--time", "40", name, timeout=120)
        assert stopped.returncode == 0
        code = docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", docker("logs", name).stderr[-4000:]
    finally:
        docker("rm", "-f", name)
        docker("volume", "rm", "-f", volume)
        docker("rmi", "-f", tag)
