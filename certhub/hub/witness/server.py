"""``certhub witness serve``: a c2sp.org/tlog-witness ``add-checkpoint`` endpoint.

The witness is configured with the logs it watches (origin -> the log's verifier keys) and
its own Ed25519 cosigning key. For each origin it remembers only the newest checkpoint it
cosigned (``state.WitnessState``), and cosigns a new one only if the log proves it extends
that one: the witness's cosignature says "as of this time, this is the largest tree I have
seen of this log, and every tree I saw before is a prefix of it", so a log cannot show one
history to some clients and another to others.

Status codes, as the spec fixes them: 400 malformed request or old size above the
checkpoint size, 403 no signature by a trusted log key, 404 unknown origin, 409 old size is
not the witness's size (body: that size, ``text/x.tlog.size``) or same size with another
root, 422 consistency proof does not verify, 200 the cosignature lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from certhub.hub.witness.protocol import (
    MAX_REQUEST_BYTES,
    SIZE_MEDIA_TYPE,
    AddCheckpoint,
    BadRequest,
    encode_size,
    parse_request,
)
from certhub.hub.witness.state import Conflict, Inconsistent, Known, WitnessState
from certhub.signing import SigningError, merkle
from certhub.signing.cosignature import CosignatureSigner
from certhub.signing.note import Checkpoint, NoteVerifier, open_note, parse_checkpoint, split_note

log = logging.getLogger("certhub.witness")

ADD_CHECKPOINT_PATH = "/add-checkpoint"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain"


class Witness:
    """The add-checkpoint logic, independent of HTTP (``app`` wraps it)."""

    def __init__(
        self,
        *,
        signer: CosignatureSigner,
        logs: Mapping[str, Sequence[NoteVerifier]],
        state: WitnessState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self._logs = {origin: list(keys) for origin, keys in logs.items()}
        self._state = state
        self._clock = clock

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            request, text, checkpoint = self._accept(body)
        except _Refused as refused:
            return refused.answer
        try:
            self._state.advance(
                origin=checkpoint.origin,
                old_size=request.old_size,
                new_size=checkpoint.size,
                new_root=checkpoint.root_hash,
                check=lambda known: _check_consistency(known, request, checkpoint),
            )
        except Conflict as e:
            if request.old_size == checkpoint.size and e.known == request.old_size:
                # Same size, another root: a fork, worth keeping.
                self._state.keep_evidence(checkpoint.origin, str(e), body)
            log.info("witness: 409 for %s: %s", checkpoint.origin, e)
            return Answer(409, encode_size(e.known), SIZE_MEDIA_TYPE)
        except Inconsistent as e:
            self._state.keep_evidence(checkpoint.origin, str(e), body)
            log.warning("witness: inconsistent checkpoint from %s: %s", checkpoint.origin, e)
            return Answer(422, f"{e}\n".encode())
        line = self.signer.cosign(text, int(self._clock()))
        return Answer(200, line.encode("utf-8"))

    def _accept(self, body: bytes) -> tuple[AddCheckpoint, str, Checkpoint]:
        """The request, its checkpoint text and body, if well-formed and signed by the log."""
        try:
            request = parse_request(body)
            text, _ = split_note(request.note)
            checkpoint = parse_checkpoint(text)
        except (BadRequest, SigningError) as e:
            raise _Refused(400, str(e)) from e
        keys = self._logs.get(checkpoint.origin)
        if keys is None:
            raise _Refused(404, f"unknown log origin {checkpoint.origin!r}")
        try:
            open_note(request.note, keys)
        except SigningError as e:
            raise _Refused(403, f"checkpoint signature: {e}") from e
        if request.old_size > checkpoint.size:
            raise _Refused(
                400, f"old size {request.old_size} is above the checkpoint size {checkpoint.size}"
            )
        return request, text, checkpoint


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.answer = Answer(status, f"{message}\n".encode())


def _check_consistency(known: Known, request: AddCheckpoint, checkpoint: Checkpoint) -> None:
    root, size = checkpoint.root_hash, checkpoint.size
    if request.old_size == 0:
        if request.proof:
            raise Inconsistent("old size is 0, so the consistency proof must be empty")
        if size == 0 and root != merkle.EMPTY_ROOT:
            raise Inconsistent("a checkpoint of size 0 must have the empty tree's root")
        return
    assert known.root is not None  # old_size == known.size > 0
    if request.old_size == size:
        if root != known.root:
            raise Conflict(
                known.size, f"checkpoint {size} has another root than the one cosigned before"
            )
        if request.proof:
            raise Inconsistent("sizes are equal, so the consistency proof must be empty")
        return
    try:
        merkle.verify_consistency(
            size1=request.old_size, size2=size, root1=known.root, root2=root, proof=request.proof
        )
    except SigningError as e:
        raise Inconsistent(
            f"consistency proof from {request.old_size} to {size} does not verify: {e}"
        ) from e


def app(witness: Witness) -> web.Application:
    # One thread for the state: SQLite work (an fsync per cosignature) stays off the loop,
    # and requests are applied one at a time, as the spec's atomicity needs anyway.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="witness-state")

    async def add_checkpoint(request: web.Request) -> web.Response:
        body = await request.content.read(MAX_REQUEST_BYTES + 1)
        answer = await asyncio.get_running_loop().run_in_executor(
            executor, witness.add_checkpoint, body
        )
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

    async def close_executor(_app: web.Application) -> None:
        executor.shutdown(wait=True)

    application = web.Application(client_max_size=MAX_REQUEST_BYTES + 1)
    application.router.add_post(ADD_CHECKPOINT_PATH, add_checkpoint)
    application.on_cleanup.append(close_executor)
    return application
