"""Streams the outbox to the hub over several concurrent streams, each bounded in flight,
results matched by ``client_ref``.

The streams are ``grpc.aio`` calls driven by one asyncio event loop, run in the thread that
calls ``Pusher.drain`` (the producer signs in its own thread beside it). grpcio's
synchronous API cost the adapter a polling thread per channel (``channel_spin``) and a
request-iterator thread per stream, with hand-overs of the GIL between them and the
response loop for every message (22% and 7% of the adapter's busy samples in a backfill);
on the loop a stream is three tasks (sender, receiver, watchdog), and grpc.aio polls with
one completion-queue thread per process, not one per channel.

Each stream has its own channel (its own TCP connection: the hub's worker processes share
one port through SO_REUSEPORT, which spreads connections, not calls), and carries the pushes
whose lineage hashes to it (``certhub.adapters.identifier.stream_key``): every version of a
certificate travels on one stream, in outbox order, so the hub sees them in the order they
were signed. A stream that fails is retried on its own; the others go on.

``client_ref`` is the outbox row id. ACCEPTED and DUPLICATE settle an item as acknowledged
(DUPLICATE is what a replay after a crash gets); REJECTED is recorded with its code, reason
and message and not retried until ``certhub adapter retry-rejected``. A failure of the
connection (UNAVAILABLE, DEADLINE_EXCEEDED, a reset stream) or a rejection with a retryable
code leaves the items pending and retries with exponential backoff and full jitter.
Revocations go one by one through ``RevokeCertificate`` once their certificate's push is
settled, with the same retry policy.

The channel (mTLS from the configured files, the hub's message limit, the expected server
name) and the reading of the hub's error answers are the typed client's, from ``certhub.core.rpc``;
what is the pusher's own is its flow control, its backoff and which answers it retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import grpc

from certhub.adapters.config import HubEndpoint
from certhub.adapters.errors import ConfigError, HubRefused
from certhub.adapters.outbox import ItemKind, ItemState, Outbox, OutboxItem, Settlement
from certhub.core.rpc.channel import (
    MAX_MESSAGE_BYTES,
    ClientTLS,
    secure_aio_channel,
    secure_channel,
)
from certhub.core.rpc.errors import error_from_rpc
from certhub.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["Backoff", "Pusher", "connect", "connect_aio"]

log = logging.getLogger("certhub.adapter.pusher")

#: First retry delay after a failure, and the cap: a restarting hub is back within seconds;
#: a hub down for maintenance is polled twice a minute, not hammered.
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
#: Results recorded per SQLite transaction, or at least every FLUSH_SECONDS: amortises the
#: fsync; a crash loses at most these answers, and their items are replayed as DUPLICATE.
FLUSH_EVERY = 256
FLUSH_SECONDS = 0.25
#: With items in flight and no result for this long, the stream is presumed dead (a hub
#: process frozen, a half-open connection keepalive has not caught yet) and is restarted.
RESULT_TIMEOUT_SECONDS = 60.0
#: A revocation is one small transaction on the hub; 30 s is ample even under load.
REVOKE_TIMEOUT_SECONDS = 30.0
#: How often an idle stream looks for new rows from the producer, and how often a stream
#: waiting out a backoff checks whether another stream failed for good.
IDLE_POLL_SECONDS = 0.05
#: How often a stream's watchdog looks for a stop or a stall (as the watchdog thread did):
#: a stop ends the call within a fifth of a second; five wake-ups a second are nothing
#: beside a stream's hundreds of messages.
WATCH_SECONDS = IDLE_POLL_SECONDS * 4
#: The hub's message limit both ways (an envelope and its attachment go up in one message);
#: keepalive pings find a dead connection within about a minute (the hub allows pings every
#: 10 s).
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]
#: Retrying helps: the hub or its database is down, overloaded or restarting.
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
#: For one item's answer (a REJECTED result, a failed revocation) the set is narrower: an
#: INTERNAL or a size limit will not go away by itself and must not hold up the queue; it is
#: recorded for the operator. RESOURCE_EXHAUSTED is retried only when it is the rate limit.
_RETRYABLE_ITEM = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)
_RETRYABLE_ITEM_NUMBERS = frozenset(code.value[0] for code in _RETRYABLE_ITEM)
_RATE_LIMITED = (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_PushCall: TypeAlias = "grpc.aio.StreamStreamCall[ingest_pb2.PushRequest, ingest_pb2.PushResult]"


def _stream_options(stream: int) -> list[tuple[str, object]]:
    """gRPC shares one connection among channels with equal arguments, credentials included
    (its global subchannel pool); a local pool per channel gives each stream its own TCP
    connection whatever the arguments, which the kernel can hand to another hub worker."""
    return [
        *_CHANNEL_OPTIONS,
        ("grpc.use_local_subchannel_pool", 1),
        # Distinct arguments as well: a channel's identity for anything keyed by its arguments.
        ("certhub.adapter.stream", stream),
    ]


def _tls(endpoint: HubEndpoint) -> ClientTLS:
    return ClientTLS(ca=endpoint.ca, cert=endpoint.cert, key=endpoint.key)


def _unreadable(exc: OSError) -> ConfigError:
    return ConfigError(f"[hub]: cannot read {exc.filename} ({exc.strerror})")


def connect(endpoint: HubEndpoint, *, stream: int = 0) -> grpc.Channel:
    """A synchronous channel set up as push stream ``stream``'s (its own connection, the same
    options), for tools that push beside the adapter (``bench/backfill_bench.py``'s bare
    streams); the pusher's own channels are ``grpc.aio`` ones (``connect_aio``)."""
    try:
        return secure_channel(
            endpoint.address,
            _tls(endpoint),
            server_name=endpoint.server_name,
            options=_stream_options(stream),
        )
    except OSError as exc:
        raise _unreadable(exc) from exc


def connect_aio(endpoint: HubEndpoint, *, stream: int = 0) -> grpc.aio.Channel:
    """The ``grpc.aio`` channel of push stream ``stream``, on its own connection; call it on
    the event loop that will use it."""
    try:
        return secure_aio_channel(
            endpoint.address,
            _tls(endpoint),
            server_name=endpoint.server_name,
            options=_stream_options(stream),
        )
    except OSError as exc:
        raise _unreadable(exc) from exc


class Backoff:
    """Exponential backoff with full jitter: a delay drawn uniformly from zero to a ceiling
    that doubles from BACKOFF_INITIAL_SECONDS to BACKOFF_MAX_SECONDS. Adapters that lost
    the same hub at the same moment spread their retries over the whole interval instead of
    returning together (equal jitter would keep half of every delay in step)."""

    def __init__(self, *, rng: Callable[[], float] = random.random) -> None:
        self._rng = rng
        self._ceiling = BACKOFF_INITIAL_SECONDS

    def next_delay(self) -> float:
        delay = self._ceiling * self._rng()
        self._ceiling = min(self._ceiling * 2, BACKOFF_MAX_SECONDS)
        return delay

    def reset(self) -> None:
        self._ceiling = BACKOFF_INITIAL_SECONDS


class _Transient(Exception):
    """The hub cannot take items right now; the pending ones are retried after a backoff."""


@dataclass(slots=True)
class _Results:
    """Answers not yet written to the outbox, flushed in batches."""

    outbox: Outbox
    on_settled: Callable[[int, int], None]
    items: list[Settlement]
    flushed_at: float

    def add(self, settlement: Settlement) -> None:
        self.items.append(settlement)
        if len(self.items) >= FLUSH_EVERY or time.monotonic() - self.flushed_at > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.items:
            self.outbox.settle(self.items)
            acked = sum(1 for s in self.items if s.state is ItemState.ACKED)
            rejected = sum(1 for s in self.items if s.state is ItemState.REJECTED)
            self.on_settled(acked, rejected)
        self.items = []
        self.flushed_at = time.monotonic()


class _Lane:
    """One push stream's channel (its own connection) and stub."""

    def __init__(self, *, index: int, count: int, channel: grpc.aio.Channel) -> None:
        self.index = index
        self.count = count
        self.channel = channel
        self.stub = ingest_pb2_grpc.IngestServiceStub(channel)
        # Items settled so far: a stream that settled some before it broke made progress,
        # so the next retry starts from the shortest backoff again.
        self.settled_total = 0

    @property
    def name(self) -> str:
        return f"stream {self.index + 1} of {self.count}"


class Pusher:
    """Pushes the outbox at ``outbox_path`` to the hub over ``streams`` streams.

    Every method runs the pusher's own event loop in the calling thread until its work is
    done (``asyncio.Runner``): ``drain`` blocks, as it did over grpcio's synchronous API,
    and the caller needs no loop of its own. Use it from one thread at a time, and
    ``close`` it.
    """

    def __init__(
        self,
        *,
        endpoint: HubEndpoint,
        outbox_path: Path,
        max_in_flight: int,
        stop: threading.Event,
        streams: int = 1,
        on_settled: Callable[[int, int], None] = lambda acked, rejected: None,
    ) -> None:
        self._address = endpoint.address
        # One connection to the outbox for every stream: all of them run on the loop's
        # thread, one call at a time. The calls are not handed to a worker thread: each is
        # one batch (a read of max_in_flight rows, or one fsync'd settle per FLUSH_EVERY
        # results), and while the loop waits for one the hub goes on with the streams'
        # windows of pushes already sent.
        self._outbox = Outbox(outbox_path)
        self._runner = asyncio.Runner()
        try:
            # grpc.aio channels belong to the loop they are made on: make them on ours.
            self._lanes = self._runner.run(self._open(endpoint, streams))
        except BaseException:
            self._runner.close()
            self._outbox.close()
            raise
        # Revocations are unary calls on the first stream's channel.
        self._stub = self._lanes[0].stub
        self._in_flight = max_in_flight
        self._stop = stop
        # Set when one stream failed for good (HubRefused): the others stop too.
        self._abort = False
        self._failures: list[Exception] = []
        self._on_settled = on_settled
        self._closed = False

    @staticmethod
    async def _open(endpoint: HubEndpoint, streams: int) -> list[_Lane]:
        return [
            _Lane(index=i, count=streams, channel=connect_aio(endpoint, stream=i))
            for i in range(streams)
        ]

    def _halted(self) -> bool:
        return self._abort or self._stop.is_set()

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        # Polled: ``stop`` is a threading.Event set by a signal handler or another thread.
        while not self._halted() and (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, IDLE_POLL_SECONDS))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._close_channels(self._lanes))
        finally:
            self._runner.close()
            self._outbox.close()

    @staticmethod
    async def _close_channels(lanes: Sequence[_Lane]) -> None:
        for lane in lanes:
            await lane.channel.close()

    def drain(self, producer_done: threading.Event) -> None:
        """Push until the producer is done and nothing can be sent any more, or stop."""
        self._runner.run(self._drain(producer_done))

    async def _drain(self, producer_done: threading.Event) -> None:
        backoff = Backoff()
        while not self._halted():
            done_before = producer_done.is_set()
            await self._push(producer_done)
            if self._halted():
                break
            try:
                revoked = await self._revocations()
            except _Transient as exc:
                delay = backoff.next_delay()
                log.warning("hub %s: %s; retrying in %.1fs", self._address, exc, delay)
                self._outbox.note_error(str(exc))
                await self._sleep(delay)
                continue
            backoff.reset()
            if done_before and not revoked and not self._has_ready_work():
                return
        if self._failures:
            raise self._failures[0]

    def _has_ready_work(self) -> bool:
        return bool(
            self._outbox.pending_pushes(after_id=0, limit=1)
            or self._outbox.ready_revocations(limit=1)
        )

    # --- pushes ---------------------------------------------------------------------------

    async def _push(self, producer_done: threading.Event) -> None:
        """Run every stream until its share of the outbox is settled and the producer is
        done (or until stop, or until one stream is refused for good)."""
        await asyncio.gather(*(self._lane(lane, producer_done) for lane in self._lanes))
        if self._failures:
            raise self._failures[0]

    async def _lane(self, lane: _Lane, producer_done: threading.Event) -> None:
        try:
            await self._run_lane(lane, producer_done)
        except Exception as exc:
            self._failures.append(exc)
            self._abort = True

    def _lane_pending(self, lane: _Lane, *, after_id: int, limit: int) -> list[OutboxItem]:
        return self._outbox.pending_pushes(
            after_id=after_id, limit=limit, stream=(lane.index, lane.count)
        )

    async def _run_lane(self, lane: _Lane, producer_done: threading.Event) -> None:
        backoff = Backoff()
        while not self._halted():
            done_before = producer_done.is_set()
            settled_before = lane.settled_total
            try:
                await _PushStream(self, lane, producer_done).run()
            except _Transient as exc:
                if lane.settled_total > settled_before:
                    backoff.reset()
                delay = backoff.next_delay()
                log.warning(
                    "hub %s (%s): %s; retrying in %.1fs", self._address, lane.name, exc, delay
                )
                self._outbox.note_error(f"{lane.name}: {exc}")
                await self._sleep(delay)
                continue
            backoff.reset()
            if done_before and not self._lane_pending(lane, after_id=0, limit=1):
                return

    # --- revocations ----------------------------------------------------------------------

    async def _revocations(self) -> int:
        """Send every revocation whose certificate push is settled; how many were settled."""
        settled = 0
        while not self._halted():
            batch = self._outbox.ready_revocations(limit=self._in_flight)
            if not batch:
                return settled
            for item in batch:
                if self._halted():
                    return settled
                settlement = await self._send_revocation(item)
                self._outbox.settle([settlement])
                if settlement.state is ItemState.PENDING:
                    return settled
                rejected = settlement.state is ItemState.REJECTED
                self._on_settled(int(not rejected), int(rejected))
                settled += 1
        return settled

    def _revoke(self, item: OutboxItem) -> Settlement:
        """Send one revocation and read the hub's answer (outside ``drain``)."""
        return self._runner.run(self._send_revocation(item))

    async def _send_revocation(self, item: OutboxItem) -> Settlement:
        assert item.kind is ItemKind.REVOKE
        try:
            result = await self._stub.RevokeCertificate(
                ingest_pb2.RevokeRequest(envelope=item.envelope, client_ref=str(item.id)),
                timeout=REVOKE_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as error:
            answer = error_from_rpc(error)
            code = answer.code
            if (
                self._halted()
                or code in _RETRYABLE_ITEM
                or code is grpc.StatusCode.CANCELLED
                or (code, answer.reason) == _RATE_LIMITED
            ):
                raise _Transient(f"revocation: {answer}") from error
            if (
                code is grpc.StatusCode.NOT_FOUND
                and item.after_id is not None
                and self._outbox.item_state(item.after_id) is ItemState.PENDING
            ):
                # The certificate is still on its way; try again after its push.
                return Settlement(id=item.id, state=ItemState.PENDING)
            if code in (grpc.StatusCode.UNAUTHENTICATED,):
                raise HubRefused(f"hub {self._address} refused the revocation: {answer}") from error
            return Settlement(
                id=item.id,
                state=ItemState.REJECTED,
                outcome="REJECTED",
                code=code.name,
                reason=answer.reason,
                message=answer.message,
            )
        return Settlement(
            id=item.id,
            state=ItemState.ACKED,
            outcome="REVOKED" if result.newly_revoked else "ALREADY_REVOKED",
            audit_index=result.audit_index,
        )


class _PushStream:
    """One PushCertificates call of one stream: a sender task writing pending items while
    the window allows, the receiver (this coroutine) settling the results, and a watchdog
    task that cancels a stalled or stopped call."""

    def __init__(self, pusher: Pusher, lane: _Lane, producer_done: threading.Event) -> None:
        self._p = pusher
        self._lane = lane
        self._producer_done = producer_done
        self._window = asyncio.Semaphore(pusher._in_flight)
        self._inflight: dict[str, OutboxItem] = {}
        self._ended = False
        self._stalled = False
        # The pusher cancelled the call itself (stop, stall, or the sender failed): the
        # CancelledError that ends the receiver is then the call's end, not the task's.
        self._cancelled = False
        self._sender_failure: Exception | None = None
        self._transient: list[str] = []
        self._last_progress = time.monotonic()

    def _closing(self) -> bool:
        return self._p._halted() or self._ended or bool(self._transient)

    def _cancel(self, call: _PushCall) -> None:
        self._cancelled = True
        call.cancel()

    async def _send(self, call: _PushCall) -> None:
        """Write the lane's pending items in outbox order, then half-close the call."""
        try:
            await self._write_pending(call)
            await call.done_writing()
        except (grpc.RpcError, asyncio.InvalidStateError):
            # The call ended under us: the receiver reads why from its status.
            return
        except Exception as exc:
            # Reading the outbox failed: end the call and retry it like a broken stream, as
            # grpcio's request-iterator thread did.
            log.exception("%s: cannot read the outbox", self._lane.name)
            self._sender_failure = exc
            self._cancel(call)

    async def _write_pending(self, call: _PushCall) -> None:
        cursor = 0
        while not self._closing():
            done = self._producer_done.is_set()
            items = self._p._lane_pending(self._lane, after_id=cursor, limit=self._p._in_flight)
            if not items:
                if done:
                    return
                await asyncio.sleep(IDLE_POLL_SECONDS)
                continue
            for item in items:
                await self._window.acquire()
                if self._closing():
                    return
                if not self._inflight:
                    self._last_progress = time.monotonic()
                self._inflight[str(item.id)] = item
                cursor = item.id
                await call.write(
                    ingest_pb2.PushRequest(
                        envelope=item.envelope,
                        attachment=item.attachment or b"",
                        client_ref=str(item.id),
                    )
                )

    async def _watch(self, call: _PushCall) -> None:
        while not self._ended:
            await asyncio.sleep(WATCH_SECONDS)
            idle = time.monotonic() - self._last_progress
            stopping = self._p._halted()
            if stopping or (self._inflight and idle > RESULT_TIMEOUT_SECONDS):
                if not stopping:
                    self._stalled = True
                self._cancel(call)
                return

    async def run(self) -> None:
        lane = self._lane

        def settled(acked: int, rejected: int) -> None:
            lane.settled_total += acked + rejected
            self._p._on_settled(acked, rejected)

        results = _Results(self._p._outbox, settled, [], time.monotonic())
        call = lane.stub.PushCertificates()
        helpers = (
            asyncio.create_task(self._send(call), name=f"{lane.name}: send"),
            asyncio.create_task(self._watch(call), name=f"{lane.name}: watchdog"),
        )
        try:
            await self._receive(call, results)
        finally:
            self._ended = True
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            results.flush()
        if self._transient:
            raise _Transient(f"hub answered {self._transient[0]}")

    async def _receive(
        self,
        call: _PushCall,
        results: _Results,
    ) -> None:
        try:
            async for result in call:
                self._last_progress = time.monotonic()
                item = self._inflight.pop(result.client_ref, None)
                if item is None:
                    log.warning("result for unknown client_ref %r ignored", result.client_ref)
                    continue
                self._window.release()
                settlement = _push_settlement(item, result)
                if settlement.state is ItemState.PENDING and not self._transient:
                    self._transient.append(f"{settlement.code}: {settlement.message}")
                results.add(settlement)
        except grpc.RpcError as error:
            self._failed(error)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._cancelled or (task is not None and task.cancelling()):
                raise
            self._ended_by_us()

    def _stall(self) -> _Transient:
        return _Transient(
            f"no result for {RESULT_TIMEOUT_SECONDS:.0f}s with {len(self._inflight)} in flight"
        )

    def _ended_by_us(self) -> None:
        if self._p._halted():
            return
        if self._stalled:
            raise self._stall()
        raise _Transient(f"reading the outbox: {self._sender_failure}")

    def _failed(self, error: grpc.RpcError) -> None:
        if self._p._halted():
            return
        if self._stalled:
            raise self._stall() from error
        answer = error_from_rpc(error)
        if answer.code in _RETRYABLE:
            raise _Transient(str(answer)) from error
        raise HubRefused(f"hub {self._p._address} refused the push stream: {answer}") from error


def _push_settlement(item: OutboxItem, result: ingest_pb2.PushResult) -> Settlement:
    if result.outcome in (ingest_pb2.ACCEPTED, ingest_pb2.DUPLICATE):
        return Settlement(
            id=item.id,
            state=ItemState.ACKED,
            outcome=ingest_pb2.PushOutcome.Name(result.outcome),
            audit_index=result.audit_index,
        )
    code = _CODE_NAMES.get(result.code, str(result.code))
    retry = result.code in _RETRYABLE_ITEM_NUMBERS or (
        result.code == _RATE_LIMITED[0].value[0] and result.reason == _RATE_LIMITED[1]
    )
    state = ItemState.PENDING if retry else ItemState.REJECTED
    return Settlement(
        id=item.id,
        state=state,
        outcome="REJECTED",
        code=code,
        reason=result.reason,
        message=result.message,
    )
