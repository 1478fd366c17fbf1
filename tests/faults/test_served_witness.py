"""`certhub serve --workers 2 --witness VKEY=URL` against a real `certhub witness serve`:
the serving hub (worker slot 0) submits its checkpoints and publishes them cosigned, with no
code of the test in between (issue 12, build item 4, wiring); a bad --witness is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import certhub, free_port, start_witness, stop_process
from support.served import REPO, prepare_deployment, serve, wait_for

from certhub.core.rpc.client import UnauthenticatedError
from certhub.hub.audit import reads
from certhub.hub.demo.world import DemoWorld
from certhub.hub.store.engine import make_engine, make_session_factory, session_scope, sqlite_url
from certhub.signing.cosignature import CosignatureVerifier, verify_cosignatures

WITNESS = "witness.fz-court.gov.cn/w1"
# A round a second once the hub has a checkpoint; a busy shared machine gets ten times that.
COSIGNED_WITHIN_SECONDS = 30.0


def test_a_served_hub_gets_its_checkpoints_cosigned(tmp_path: Path, world: DemoWorld) -> None:
    data_dir = tmp_path / "data"
    db_url = sqlite_url(data_dir)
    data_dir.mkdir()
    engine = make_engine(db_url)
    prepare_deployment(data_dir, engine, world.registry_toml())
    log_vkey = certhub("audit", "vkey", "--data-dir", str(data_dir)).stdout.strip()
    port = free_port()
    witness, witness_vkey = start_witness(
        tmp_path / "witness", name=WITNESS, log_vkey=log_vkey, port=port
    )
    served = None
    try:
        served = serve(
            data_dir, db_url, "--witness", f"{witness_vkey}=http://127.0.0.1:{port}", workers=2
        )
        # Any call is audited; a refused one will do.
        with served.client("nobody-registered") as client, pytest.raises(UnauthenticatedError):
            client.stats()
        sessions = make_session_factory(engine)

        def published() -> reads.StoredCheckpoint | None:
            with session_scope(sessions) as session:
                return reads.latest_cosigned_checkpoint(session)

        wait_for(lambda: published() is not None, timeout=COSIGNED_WITHIN_SECONDS,
                 what="a cosigned checkpoint")  # fmt: skip
        cosigned = published()
        assert cosigned is not None
        assert cosigned.size >= 1
        found = verify_cosignatures(cosigned.note, [CosignatureVerifier.from_vkey(witness_vkey)])
        assert [v.name for v in found] == [WITNESS]
    finally:
        if served is not None:
            served.kill()
        stop_process(witness)
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("witness.x/w1+00000000+AAAA", "expected VKEY=URL"),
        ("not-a-key=http://127.0.0.1:1", "--witness: "),
    ],
)
def test_a_bad_witness_option_is_one_line(tmp_path: Path, given: str, problem: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "certhub.hub.cli.main", "serve", "--data-dir", str(tmp_path),
         "--witness", given, "--workers", "1"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 or done.returncode == 1, done.stderr
    assert problem in done.stderr
    assert "Traceback" not in done.stderr
