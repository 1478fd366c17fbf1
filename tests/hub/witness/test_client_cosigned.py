"""Clients can require cosignatures (issue 12, build item 4): GetCheckpoint(cosigned) serves
the newest checkpoint the witnesses cosigned, HubClient(witness_keys=...) checks them, and
fetch(prove_audit=True) proves its entry in a cosigned checkpoint, waiting for the witnesses
to cosign one that covers it. A real `certhub witness serve` on loopback; the hub serves with
the witness configured, as `certhub serve --witness` does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from support.hubs import RunningHub, start_hub
from support.intake import WINDOW, push_licence
from support.processes import free_port, start_witness, stop_process

from certhub.core.rpc.client import AuditProofError, HubClient, NotFoundError
from certhub.hub.demo.world import DemoWorld
from certhub.hub.grpc.server import AuditWatch
from certhub.hub.witness.submitter import WitnessEndpoint
from certhub.signing import Algorithm, PrivateKey
from certhub.signing.cosignature import CosignatureSigner, CosignatureVerifier

WITNESS = "witness.fz-court.gov.cn/w1"


@pytest.fixture
def witnessed(tmp_path: Path, engine: Engine, world: DemoWorld) -> Iterator[tuple[RunningHub, str]]:
    """A hub whose checkpoints a real witness process cosigns; (hub, witness vkey)."""
    data_dir = tmp_path / "data"
    # The hub's log key exists once the data dir is initialised; start_hub does it, so the
    # witness learns the key from a first hub start without witnesses.
    plain = start_hub(data_dir, engine, world)
    log_vkey = plain.hub.audit_log.keys.signer.vkey
    plain.server.stop(grace=None)
    plain.hub.close()
    port = free_port()
    process, witness_vkey = start_witness(
        tmp_path / "witness", name=WITNESS, log_vkey=log_vkey, port=port
    )
    endpoint = WitnessEndpoint(
        verifier=CosignatureVerifier.from_vkey(witness_vkey), url=f"http://127.0.0.1:{port}"
    )
    running = start_hub(
        data_dir, engine, world, audit_watch=AuditWatch(witnesses=(endpoint,), quorum=1)
    )
    try:
        yield running, witness_vkey
    finally:
        running.server.stop(grace=None)
        running.hub.close()
        stop_process(process)


def client(running: RunningHub, principal: str, witness_keys: tuple[str, ...]) -> HubClient:
    c = running.client(principal)
    c.log_verifier_key = running.hub.audit_log.keys.signer.vkey
    c.witness_keys = witness_keys
    return c


@pytest.mark.slow
def test_a_fetch_is_proven_in_a_checkpoint_the_witness_cosigned(
    witnessed: tuple[RunningHub, str], world: DemoWorld
) -> None:
    running, witness_vkey = witnessed
    pushed = push_licence(running, world, 81)
    with client(running, WINDOW, (witness_vkey,)) as window:
        fetched = window.fetch(
            id_type="USCC", holder_id=pushed.holder_id, service_item=pushed.item_code,
            case_number="GL-COSIGNED-1", prove_audit=True,
        )  # fmt: skip
    proof = fetched.audit_proof
    assert proof is not None
    assert proof.index == fetched.audit_index
    assert proof.checkpoint.size > fetched.audit_index
    # The checkpoint it was proven in carries the witness's cosignature line.
    assert any(line.startswith(f"— {WITNESS} ") for line in proof.checkpoint.note.splitlines()), (
        proof.checkpoint.note
    )


@pytest.mark.slow
def test_a_witness_the_hub_does_not_use_is_no_cosignature(
    witnessed: tuple[RunningHub, str], world: DemoWorld
) -> None:
    running, _ = witnessed
    stranger = CosignatureSigner("witness.elsewhere/w1", PrivateKey.generate(Algorithm.ED25519))
    pushed = push_licence(running, world, 82)
    with client(running, WINDOW, (stranger.vkey,)) as window, pytest.raises(AuditProofError) as e:
        window.fetch(
            id_type="USCC", holder_id=pushed.holder_id, service_item=pushed.item_code,
            case_number="GL-COSIGNED-2", prove_audit=True,
        )  # fmt: skip
    assert "carries 0 valid cosignatures of the required witnesses; this client needs 1" in str(
        e.value
    )


def test_no_cosigned_checkpoint_is_not_found(running_hub: RunningHub) -> None:
    stranger = CosignatureSigner("witness.elsewhere/w1", PrivateKey.generate(Algorithm.ED25519))
    with client(running_hub, WINDOW, (stranger.vkey,)) as window, pytest.raises(NotFoundError) as e:
        window.checkpoint()
    assert e.value.reason == "NO_COSIGNED_CHECKPOINT"
    assert e.value.audit_index is not None
