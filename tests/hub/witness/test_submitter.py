"""The hub submits its checkpoints to real witnesses over loopback HTTP and publishes them
cosigned once a quorum answered; GetCheckpoint's service serves the cosigned note."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import update
from support.audit_log import append_all, synthetic_records
from support.hubs import RunningHub

from certhub.hub.audit import reads
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import LogCheckpoint
from certhub.hub.witness.server import Witness, app
from certhub.hub.witness.state import WitnessState
from certhub.hub.witness.submitter import WitnessEndpoint, WitnessSubmitter
from certhub.signing import Algorithm, NoteVerifier, PrivateKey
from certhub.signing.cosignature import CosignatureSigner, CosignatureVerifier, verify_cosignatures
from certhub.signing.note import Checkpoint, open_note

NAMES = ("witness.fj-data-bureau.gov.cn/w1", "witness.fz-court.gov.cn/w1", "witness.third/w1")


@pytest.fixture(scope="module")
def signers() -> list[CosignatureSigner]:
    return [CosignatureSigner(n, PrivateKey.generate(Algorithm.ED25519)) for n in NAMES]


@asynccontextmanager
async def witnesses(
    tmp_path: Path, running: RunningHub, signers: list[CosignatureSigner]
) -> AsyncIterator[list[WitnessEndpoint]]:
    """The three witnesses serving; each endpoint's ``url`` is live."""
    log_key = NoteVerifier.from_vkey(running.hub.audit_log.keys.signer.vkey)
    async with AsyncExitStack() as stack:
        endpoints = []
        for n, signer in enumerate(signers):
            state = WitnessState(tmp_path / f"witness-{n}.db")
            stack.callback(state.close)
            runner = web.AppRunner(
                app(Witness(signer=signer, logs={log_key.name: [log_key]}, state=state))
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            endpoints.append(
                WitnessEndpoint(
                    verifier=CosignatureVerifier.from_vkey(signer.vkey), url=f"http://{host}:{port}"
                )
            )
        yield endpoints


def grow(running: RunningHub, count: int, start: int) -> None:
    hub = running.hub
    append_all(hub.sessions, hub.audit_log, synthetic_records(count, start=start), batch=count)


def cosigned(running: RunningHub) -> reads.StoredCheckpoint | None:
    with session_scope(running.hub.sessions) as session:
        return reads.latest_cosigned_checkpoint(session)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_quorum_of_cosignatures_is_published(
    tmp_path: Path, running_hub: RunningHub, signers: list[CosignatureSigner]
) -> None:
    grow(running_hub, 30, 0)
    verifiers = [CosignatureVerifier.from_vkey(s.vkey) for s in signers]
    log_key = NoteVerifier.from_vkey(running_hub.hub.audit_log.keys.signer.vkey)

    async def scenario() -> None:
        async with witnesses(tmp_path, running_hub, signers) as endpoints:
            submitter = WitnessSubmitter(
                sessions=running_hub.hub.sessions, witnesses=endpoints, quorum=2
            )
            first = await submitter.tick()
            assert first is not None
            assert (first.size, first.published, len(first.cosigned_by)) == (30, True, 3)
            assert await submitter.tick() is None  # nothing new
            grow(running_hub, 12, 30)
            second = await submitter.tick()
            assert second is not None
            assert (second.size, second.published) == (42, True)
            await submitter.close()

    run(scenario)
    published = cosigned(running_hub)
    assert published is not None
    assert published.size == 42
    open_note(published.note, [log_key])  # still the log's signed checkpoint
    assert {c.name for c in verify_cosignatures(published.note, verifiers)} == set(NAMES)


def test_a_witness_down_still_makes_a_quorum_but_not_all(
    tmp_path: Path, running_hub: RunningHub, signers: list[CosignatureSigner]
) -> None:
    grow(running_hub, 5, 0)

    async def scenario() -> None:
        async with witnesses(tmp_path, running_hub, signers) as endpoints:
            down = WitnessEndpoint(verifier=endpoints[2].verifier, url="http://127.0.0.1:9")
            live = [endpoints[0], endpoints[1], down]
            strict = WitnessSubmitter(sessions=running_hub.hub.sessions, witnesses=live, quorum=3)
            result = await strict.tick()
            assert result is not None
            assert not result.published
            assert set(result.failures) == {NAMES[2]}
            await strict.close()
            assert cosigned(running_hub) is None
            lenient = WitnessSubmitter(sessions=running_hub.hub.sessions, witnesses=live, quorum=2)
            result = await lenient.tick()
            assert result is not None
            assert result.published
            await lenient.close()

    run(scenario)
    published = cosigned(running_hub)
    assert published is not None
    assert published.size == 5


def test_409_is_followed_with_a_proof_from_the_witness_size(
    tmp_path: Path, running_hub: RunningHub, signers: list[CosignatureSigner]
) -> None:
    # A second hub process (or a restarted one) does not know what the witnesses saw: it
    # starts from old size 0, learns their size from the 409 and proves consistency from it.
    grow(running_hub, 9, 0)

    async def scenario() -> None:
        async with witnesses(tmp_path, running_hub, signers) as endpoints:
            first = WitnessSubmitter(
                sessions=running_hub.hub.sessions, witnesses=endpoints, quorum=3
            )
            assert (await first.tick()) is not None
            await first.close()
            grow(running_hub, 23, 9)
            fresh = WitnessSubmitter(
                sessions=running_hub.hub.sessions, witnesses=endpoints, quorum=3
            )
            result = await fresh.tick()
            assert result is not None
            assert result.published, result.failures
            await fresh.close()

    run(scenario)
    published = cosigned(running_hub)
    assert published is not None
    assert published.size == 32


def test_a_rewritten_log_gets_no_cosignature(
    tmp_path: Path, running_hub: RunningHub, signers: list[CosignatureSigner]
) -> None:
    grow(running_hub, 16, 0)

    async def scenario() -> None:
        async with witnesses(tmp_path, running_hub, signers) as endpoints:
            submitter = WitnessSubmitter(
                sessions=running_hub.hub.sessions, witnesses=endpoints, quorum=1
            )
            assert (await submitter.tick()) is not None
            # The operator re-signs a checkpoint of 20 over another root (a fork); the
            # witnesses, which cosigned 16, refuse it whatever proof the hub can build.
            grow(running_hub, 4, 16)
            audit_log = running_hub.hub.audit_log
            forged = audit_log.sign(
                Checkpoint(origin=audit_log.keys.origin, size=20, root_hash=bytes(32))
            )
            with session_scope(running_hub.hub.sessions, write=True) as session:
                session.execute(
                    update(LogCheckpoint)
                    .where(LogCheckpoint.size == 20)
                    .values(note=forged.note, root=bytes(32))
                )
            result = await submitter.tick()
            assert result is not None
            assert not result.published
            assert all("422" in why for why in result.failures.values()), result.failures
            await submitter.close()

    run(scenario)
    published = cosigned(running_hub)
    assert published is not None
    assert published.size == 16


def test_run_cosigns_until_stopped(
    tmp_path: Path, running_hub: RunningHub, signers: list[CosignatureSigner]
) -> None:
    grow(running_hub, 3, 0)

    async def scenario() -> None:
        async with witnesses(tmp_path, running_hub, signers) as endpoints:
            submitter = WitnessSubmitter(
                sessions=running_hub.hub.sessions, witnesses=endpoints, quorum=3, interval=0.05
            )
            task = asyncio.create_task(submitter.run())
            deadline = asyncio.get_running_loop().time() + 20
            while (cosigned(running_hub) or reads.StoredCheckpoint(0, b"", "")).size < 3:
                assert asyncio.get_running_loop().time() < deadline, "no cosigned checkpoint"
                await asyncio.sleep(0.02)
            grow(running_hub, 2, 3)
            while (cosigned(running_hub) or reads.StoredCheckpoint(0, b"", "")).size < 5:
                assert asyncio.get_running_loop().time() < deadline, "not cosigned again"
                await asyncio.sleep(0.02)
            submitter.stop()
            await asyncio.wait_for(task, 10)

    run(scenario)


def test_quorum_must_be_possible(running_hub: RunningHub, signers: list[CosignatureSigner]) -> None:
    endpoint = WitnessEndpoint(
        verifier=CosignatureVerifier.from_vkey(signers[0].vkey), url="http://127.0.0.1:9"
    )
    with pytest.raises(ValueError, match="quorum"):
        WitnessSubmitter(sessions=running_hub.hub.sessions, witnesses=[endpoint], quorum=2)
