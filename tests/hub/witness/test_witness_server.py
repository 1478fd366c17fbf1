"""`certhub witness serve` over real HTTP on loopback, against honest and hostile logs
(c2sp.org/tlog-witness status codes; state persisted before the answer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from support.tlog import MemoryLog

from certhub.hub.cli.main import main
from certhub.hub.witness.protocol import SIZE_MEDIA_TYPE, encode_request
from certhub.hub.witness.server import ADD_CHECKPOINT_PATH, Witness, app
from certhub.hub.witness.state import WitnessState
from certhub.signing import Algorithm, NoteSigner, NoteVerifier, PrivateKey
from certhub.signing.cosignature import CosignatureSigner, CosignatureVerifier, verify_cosignatures

ORIGIN = "certhub.example.gov.cn/gulou"
WITNESS = "witness.fj-data-bureau.gov.cn/w1"
NOW = 1_764_806_400


@pytest.fixture(scope="module")
def log_key() -> NoteSigner:
    return NoteSigner(ORIGIN, PrivateKey.generate(Algorithm.ED25519))


@pytest.fixture(scope="module")
def witness_key() -> CosignatureSigner:
    return CosignatureSigner(WITNESS, PrivateKey.generate(Algorithm.ED25519))


@pytest.fixture
def honest(log_key: NoteSigner) -> MemoryLog:
    log = MemoryLog(log_key)
    log.grow(10)
    return log


Post = Callable[[bytes], Awaitable[tuple[int, str, str]]]


@asynccontextmanager
async def served(
    state_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner
) -> AsyncIterator[Post]:
    state = WitnessState(state_path)
    witness = Witness(
        signer=witness_key,
        logs={ORIGIN: [NoteVerifier.from_vkey(log_key.vkey)]},
        state=state,
        clock=lambda: NOW,
    )
    runner = web.AppRunner(app(witness))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}{ADD_CHECKPOINT_PATH}"
    try:
        async with aiohttp.ClientSession() as http:

            async def post(body: bytes) -> tuple[int, str, str]:
                async with http.post(url, data=body) as response:
                    return response.status, await response.text(), response.content_type

            yield post
    finally:
        await runner.cleanup()
        state.close()


def run(
    tmp_path: Path,
    log_key: NoteSigner,
    witness_key: CosignatureSigner,
    scenario: Callable[[Post], Awaitable[None]],
) -> None:
    async def main() -> None:
        async with served(tmp_path / "witness.db", log_key, witness_key) as post:
            await scenario(post)

    asyncio.run(main())


def add(log: MemoryLog, old: int, *, proof: list[bytes] | None = None) -> bytes:
    return encode_request(old, log.consistency(old) if proof is None else proof, log.note())


def test_cosigns_the_first_checkpoint_and_extensions(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    verifier = CosignatureVerifier.from_vkey(witness_key.vkey)

    async def scenario(post: Post) -> None:
        status, body, _ = await post(add(honest, 0))
        assert status == 200, body
        [cosigned] = verify_cosignatures(honest.note() + body, [verifier])
        assert (cosigned.name, cosigned.timestamp) == (WITNESS, NOW)
        honest.grow(7)
        status, body, _ = await post(add(honest, 10))
        assert status == 200, body
        assert verify_cosignatures(honest.note() + body, [verifier])
        # The same checkpoint again (old size = its size, empty proof) is cosigned again.
        status, body, _ = await post(add(honest, 17))
        assert status == 200, body

    run(tmp_path, log_key, witness_key, scenario)
    assert WitnessState(tmp_path / "witness.db").known(ORIGIN).size == 17


def test_wrong_old_size_gets_409_with_the_known_size(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    async def scenario(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200
        honest.grow(5)
        status, body, content_type = await post(add(honest, 3))
        assert (status, body, content_type) == (409, "10\n", SIZE_MEDIA_TYPE)
        status, _, _ = await post(add(honest, 10))
        assert status == 200

    run(tmp_path, log_key, witness_key, scenario)


def test_rollback_is_refused(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    async def scenario(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200
        older = honest.copy()
        older.hashes = older.hashes[:6]
        # Claiming the witness's size as old size: above the checkpoint's, 400.
        status, _, _ = await post(encode_request(10, [], older.note()))
        assert status == 400
        # Claiming a smaller old size: 409 and the witness's size.
        status, body, _ = await post(add(older, 0))
        assert (status, body) == (409, "10\n")

    run(tmp_path, log_key, witness_key, scenario)
    assert WitnessState(tmp_path / "witness.db").known(ORIGIN).size == 10


def test_fork_at_the_same_size_is_refused_and_kept_as_evidence(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    fork = MemoryLog(log_key)
    fork.grow(10, tag="forged")

    async def scenario(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200
        status, body, _ = await post(encode_request(10, [], fork.note()))
        assert (status, body) == (409, "10\n")

    run(tmp_path, log_key, witness_key, scenario)
    state = WitnessState(tmp_path / "witness.db")
    assert state.known(ORIGIN).root == honest.root()
    assert len(state.evidence(ORIGIN)) == 1


def test_fork_that_grows_is_refused_as_inconsistent(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    # A log that rewrote entry 3 and grew: its own consistency proof from 10 does not lead
    # to the root the witness cosigned at 10.
    fork = MemoryLog(log_key)
    fork.grow(3)
    fork.append(b"rewritten")
    fork.grow(20)

    async def scenario(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200
        status, body, _ = await post(add(fork, 10))
        assert status == 422, body
        assert "does not verify" in body

    run(tmp_path, log_key, witness_key, scenario)
    state = WitnessState(tmp_path / "witness.db")
    assert state.known(ORIGIN).size == 10
    assert state.evidence(ORIGIN)


def test_bad_proofs_are_422(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    async def scenario(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200
        honest.grow(9)
        good = honest.consistency(10)
        for proof in (
            [bytes(32), *good[1:]],  # a changed hash
            good[:-1],  # a missing hash
            [*good, bytes(32)],  # one too many
            [],  # none
        ):
            status, body, _ = await post(add(honest, 10, proof=proof))
            assert status == 422, (proof, body)
        assert (await post(add(honest, 10)))[0] == 200

    run(tmp_path, log_key, witness_key, scenario)
    assert WitnessState(tmp_path / "witness.db").known(ORIGIN).size == 19


def test_unknown_log_bad_signature_and_malformed_requests(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    stranger = MemoryLog(NoteSigner("other.example/log", PrivateKey.generate(Algorithm.ED25519)))
    stranger.grow(3)
    impostor = MemoryLog(NoteSigner(ORIGIN, PrivateKey.generate(Algorithm.ED25519)))
    impostor.grow(3)

    async def scenario(post: Post) -> None:
        assert (await post(add(stranger, 0)))[0] == 404
        assert (await post(add(impostor, 0)))[0] == 403
        assert (await post(b"old 01\n\n" + honest.note().encode()))[0] == 400
        assert (await post(b"no old line\n\n" + honest.note().encode()))[0] == 400
        assert (await post(b"old 0\n" + honest.note().encode()))[0] == 400  # no empty line
        assert (await post(encode_request(11, [], honest.note())))[0] == 400  # old > size
        too_long = b"old 0\n" + b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 64 + b"\n"
        assert (await post(too_long + honest.note().encode()))[0] == 400
        assert (await post(b"old 0\n\n" + b"\xff" * 10))[0] == 400
        assert (await post(b"x" * 70_000))[0] in (400, 413)
        # None of that changed anything: the first honest checkpoint is still old size 0.
        assert (await post(add(honest, 0)))[0] == 200

    run(tmp_path, log_key, witness_key, scenario)


def test_state_survives_a_restart(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    async def first(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200

    async def second(post: Post) -> None:
        status, body, _ = await post(add(honest, 0))
        assert (status, body) == (409, "10\n")

    run(tmp_path, log_key, witness_key, first)
    run(tmp_path, log_key, witness_key, second)


def test_concurrent_requests_from_one_old_size_cosign_once(
    tmp_path: Path, log_key: NoteSigner, witness_key: CosignatureSigner, honest: MemoryLog
) -> None:
    # The race the spec describes: two checkpoints both checked against size 10; the
    # smaller one must not be stored after the larger (a rollback the witness signed).
    async def scenario(post: Post) -> None:
        assert (await post(add(honest, 0)))[0] == 200
        bodies = []
        for grow in (5, 20):
            bigger = honest.copy()
            bigger.grow(grow)
            bodies.append(add(bigger, 10))
        results = await asyncio.gather(*(post(b) for b in bodies))
        assert sorted(status for status, _, _ in results) == [200, 409]

    run(tmp_path, log_key, witness_key, scenario)
    assert WitnessState(tmp_path / "witness.db").known(ORIGIN).size in (15, 30)


def test_cli_vkey_creates_the_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["witness", "vkey", "--data-dir", str(tmp_path / "w"), "--name", WITNESS]
    assert main(args) == 0
    first = capsys.readouterr().out.strip()
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == first
    assert CosignatureVerifier.from_vkey(first).name == WITNESS
    assert (tmp_path / "w" / "witness-key.pem").stat().st_mode & 0o077 == 0
