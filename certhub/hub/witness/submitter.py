"""The hub's side of c2sp.org/tlog-witness: submit each new checkpoint to the configured
witnesses with its consistency proof, collect their cosignatures, and publish the
checkpoint once a quorum (k of n) cosigned it.

``WitnessSubmitter`` is a component with an async ``tick()`` (one round) and ``run()``
(rounds on a cadence until ``stop()``), for the server to start on its event loop. Database
reads run in a worker thread. A witness that is down or refuses only costs its cosignature
this round; the next round tries again from where that witness says it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from certhub.hub.audit import reads
from certhub.hub.store.engine import session_scope
from certhub.hub.store.models import CosignedCheckpoint
from certhub.hub.witness.protocol import (
    BadRequest,
    encode_request,
    parse_cosignature_lines,
    parse_size,
)
from certhub.hub.witness.server import ADD_CHECKPOINT_PATH
from certhub.signing import SigningError
from certhub.signing.cosignature import CosignatureVerifier, verify_cosignatures

log = logging.getLogger("certhub.witness")

# How long one witness may take to answer one add-checkpoint. A witness does one fsync and
# one signature: well under a second when healthy; a slower one is skipped for this round
# rather than holding back the others' cosignatures.
WITNESS_TIMEOUT_SECONDS = 5.0
# Rounds per second of ``run()``. The hub signs checkpoints about once a second (the
# group commit or the signing cadence); cosigning every new one keeps the published
# cosigned checkpoint within a round of the log.
DEFAULT_INTERVAL_SECONDS = 1.0
# 409 answers followed per witness per round: the first tells the witness's size, the
# retry uses it; a witness whose size moves again meanwhile is tried next round.
MAX_CONFLICT_RETRIES = 1


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """One witness: its verifier key and the URL prefix of its add-checkpoint."""

    verifier: CosignatureVerifier
    url: str

    @property
    def name(self) -> str:
        return self.verifier.name


@dataclass(frozen=True, slots=True)
class Round:
    """What one ``tick`` did."""

    size: int
    cosigned_by: tuple[str, ...]
    published: bool
    # Witness name -> why it gave no cosignature this round.
    failures: dict[str, str]


class WitnessRefused(Exception):
    pass


class WitnessSubmitter:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        witnesses: Sequence[WitnessEndpoint],
        quorum: int,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        if not 1 <= quorum <= len(witnesses):
            raise ValueError(f"quorum {quorum} must be between 1 and {len(witnesses)} witnesses")
        self._sessions = sessions
        self._witnesses = list(witnesses)
        self._quorum = quorum
        self._interval = interval
        # What each witness last told us it cosigned (its old size for the next request).
        self._known: dict[str, int] = {w.name: 0 for w in witnesses}
        self._published = -1
        self._stopping = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """Rounds every ``interval`` seconds until ``stop()``; a failed round is logged."""
        try:
            while not self._stopping.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.exception("witness round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._interval)
        finally:
            await self.close()

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def tick(self) -> Round | None:
        """Submit the newest checkpoint to every witness; publish it on a quorum. None when
        there is nothing new to submit."""
        latest = await asyncio.to_thread(self._latest)
        if latest is None or latest.size <= self._published:
            return None
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WITNESS_TIMEOUT_SECONDS)
            )
        results = await asyncio.gather(
            *(self._cosign(self._http, w, latest) for w in self._witnesses),
            return_exceptions=True,
        )
        lines: list[str] = []
        names: list[str] = []
        failures: dict[str, str] = {}
        for witness, result in zip(self._witnesses, results, strict=True):
            if isinstance(result, BaseException):
                failures[witness.name] = f"{type(result).__name__}: {result}"
                log.warning("witness %s gave no cosignature for %d: %s", witness.name,
                            latest.size, failures[witness.name])  # fmt: skip
            else:
                lines.append(result)
                names.append(witness.name)
        published = len(lines) >= self._quorum
        if published:
            note = latest.note + "".join(lines)
            await asyncio.to_thread(self._publish, latest.size, note, len(lines))
            self._published = latest.size
        return Round(
            size=latest.size, cosigned_by=tuple(names), published=published, failures=failures
        )

    async def _cosign(
        self, http: aiohttp.ClientSession, witness: WitnessEndpoint, latest: reads.StoredCheckpoint
    ) -> str:
        """The witness's verified cosignature line for ``latest``."""
        old = self._known[witness.name]
        for _ in range(MAX_CONFLICT_RETRIES + 1):
            if old > latest.size:
                raise WitnessRefused(
                    f"witness has cosigned size {old}, past this log's checkpoint "
                    f"{latest.size}: the log was rolled back, or forked"
                )
            proof = await asyncio.to_thread(self._proof, old, latest.size)
            body = encode_request(old, proof, latest.note)
            async with http.post(witness.url.rstrip("/") + ADD_CHECKPOINT_PATH, data=body) as r:
                answer = await r.read()
                status = r.status
            if status == 409:
                try:
                    old = parse_size(answer)
                except BadRequest as e:
                    raise WitnessRefused(f"409 without a size: {e}") from e
                self._known[witness.name] = old
                continue
            if status != 200:
                text = answer.decode("utf-8", "replace").strip()[:200]
                raise WitnessRefused(f"HTTP {status}: {text}")
            try:
                # Keep only lines by this witness's key that verify (a witness may send
                # lines of other keys too); one bad line by its key refuses the answer.
                own = [
                    line
                    for line in _lines(parse_cosignature_lines(answer))
                    if verify_cosignatures(latest.note + line, [witness.verifier])
                ]
            except (BadRequest, SigningError) as e:
                raise WitnessRefused(f"bad cosignature: {e}") from e
            if not own:
                raise WitnessRefused("the answer holds no cosignature by the witness's key")
            self._known[witness.name] = latest.size
            return own[0]
        raise WitnessRefused(f"its size kept changing (last 409 said {old})")

    def _latest(self) -> reads.StoredCheckpoint | None:
        with session_scope(self._sessions) as session:
            return reads.latest_checkpoint(session)

    def _proof(self, old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        with session_scope(self._sessions) as session:
            return list(reads.consistency_proof(session, old, new).hashes)

    def _publish(self, size: int, note: str, cosigners: int) -> None:
        with session_scope(self._sessions, write=True) as session:
            exists = session.execute(
                select(CosignedCheckpoint.size).where(CosignedCheckpoint.size == size)
            ).scalar_one_or_none()
            if exists is None:
                session.execute(
                    insert(CosignedCheckpoint).values(
                        size=size,
                        note=note,
                        cosigners=cosigners,
                        created_at=dt.datetime.now(dt.UTC),
                    )
                )


def _lines(text: str) -> list[str]:
    return [line + "\n" for line in text[:-1].split("\n")]
