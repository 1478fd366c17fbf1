"""Streams the outbox to the hub over several concurrent streams, each bounded in flight,
results matched by ``client_ref``.

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

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from certhub.adapters.config import HubEndpoint
from certhub.adapters.errors import ConfigError, HubRefused
from certhub.adapters.outbox import ItemKind, ItemState, Outbox, OutboxItem, Settlement
from certhub.core.rpc.channel import MAX_MESSAGE_BYTES, ClientTLS, secure_channel
from certhub.core.rpc.errors import error_from_rpc
from certhub.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["Backoff", "Pusher", "connect"]

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


def connect(endpoint: HubEndpoint, *, stream: int = 0) -> grpc.Channel:
    """A channel of its own for push stream ``stream``.

    gRPC shares one connection among channels with equal arguments, credentials included
    (its global subchannel pool); a local pool per channel gives each stream its own TCP
    connection whatever the arguments, which the kernel can hand to another hub worker.
    """
    options: list[tuple[str, object]] = [
        *_CHANNEL_OPTIONS,
        ("grpc.use_local_subchannel_pool", 1),
        # Distinct arguments as well: a channel's identity for anything keyed by its arguments.
        ("certhub.adapter.stream", stream),
    ]
    tls = ClientTLS(ca=endpoint.ca, cert=endpoint.cert, key=endpoint.key)
    try:
        return secure_channel(
            endpoint.address, tls, server_name=endpoint.server_name, options=options
        )
    except OSError as exc:
        raise ConfigError(f"[hub]: cannot read {exc.filename} ({exc.strerror})") from exc


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
    """One push stream's connection and outbox handles (one per thread: request iterator,
    response loop)."""

    def __init__(self, *, index: int, count: int, endpoint: HubEndpoint, outbox_path: Path) -> None:
        self.index = index
        self.count = count
        self.channel = connect(endpoint, stream=index)
        self.stub = ingest_pb2_grpc.IngestServiceStub(self.channel)
        self.reader = Outbox(outbox_path)
        self.writer = Outbox(outbox_path)
        # Items settled so far: a stream that settled some before it broke made progress,
        # so the next retry starts from the shortest backoff again.
        self.settled_total = 0

    @property
    def name(self) -> str:
        return f"stream {self.index + 1} of {self.count}"

    def pending(self, *, after_id: int, limit: int) -> list[OutboxItem]:
        return self.reader.pending_pushes(
            after_id=after_id, limit=limit, stream=(self.index, self.count)
        )

    def close(self) -> None:
        self.channel.close()
        self.reader.close()
        self.writer.close()


class Pusher:
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
        self._lanes = [
            _Lane(index=i, count=streams, endpoint=endpoint, outbox_path=outbox_path)
            for i in range(streams)
        ]
        # Revocations are unary calls on the first stream's channel, from the drain thread.
        self._stub = self._lanes[0].stub
        self._writer = Outbox(outbox_path)
        self._in_flight = max_in_flight
        self._stop = stop
        # Set when one stream failed for good (HubRefused): the others stop too.
        self._abort = threading.Event()
        self._failures: list[BaseException] = []
        self._notify_settled = on_settled
        self._settled_lock = threading.Lock()

    def _on_settled(self, acked: int, rejected: int) -> None:
        """Report items the hub answered for good: ``acked`` acknowledged, ``rejected``."""
        with self._settled_lock:
            self._notify_settled(acked, rejected)

    def _halted(self) -> bool:
        return self._stop.is_set() or self._abort.is_set()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._halted() and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, IDLE_POLL_SECONDS))

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._writer.close()

    def drain(self, producer_done: threading.Event) -> None:
        """Push until the producer is done and nothing can be sent any more, or stop."""
        backoff = Backoff()
        while not self._halted():
            done_before = producer_done.is_set()
            self._push(producer_done)
            if self._halted():
                break
            try:
                revoked = self._revocations()
            except _Transient as exc:
                delay = backoff.next_delay()
                log.warning("hub %s: %s; retrying in %.1fs", self._address, exc, delay)
                self._writer.note_error(str(exc))
                self._sleep(delay)
                continue
            backoff.reset()
            if done_before and not revoked and not self._has_ready_work():
                return
        if self._failures:
            raise self._failures[0]

    def _has_ready_work(self) -> bool:
        return bool(
            self._writer.pending_pushes(after_id=0, limit=1)
            or self._writer.ready_revocations(limit=1)
        )

    # --- pushes ---------------------------------------------------------------------------

    def _push(self, producer_done: threading.Event) -> None:
        """Run every stream until its share of the outbox is settled and the producer is
        done (or until stop, or until one stream is refused for good)."""
        if len(self._lanes) == 1:
            self._run_lane(self._lanes[0], producer_done)
            return
        threads = [
            threading.Thread(
                target=self._lane_thread,
                args=(lane, producer_done),
                name=f"adapter-push-{lane.index + 1}",
                daemon=True,
            )
            for lane in self._lanes
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._failures:
            raise self._failures[0]

    def _lane_thread(self, lane: _Lane, producer_done: threading.Event) -> None:
        try:
            self._run_lane(lane, producer_done)
        except BaseException as exc:
            self._failures.append(exc)
            self._abort.set()

    def _run_lane(self, lane: _Lane, producer_done: threading.Event) -> None:
        backoff = Backoff()
        while not self._halted():
            done_before = producer_done.is_set()
            settled_before = lane.settled_total
            try:
                _PushStream(self, lane, producer_done).run()
            except _Transient as exc:
                if lane.settled_total > settled_before:
                    backoff.reset()
                delay = backoff.next_delay()
                log.warning(
                    "hub %s (%s): %s; retrying in %.1fs", self._address, lane.name, exc, delay
                )
                lane.writer.note_error(f"{lane.name}: {exc}")
                self._sleep(delay)
                continue
            backoff.reset()
            if done_before and not lane.pending(after_id=0, limit=1):
                return

    # --- revocations ----------------------------------------------------------------------

    def _revocations(self) -> int:
        """Send every revocation whose certificate push is settled; how many were settled."""
        settled = 0
        while not self._halted():
            batch = self._writer.ready_revocations(limit=self._in_flight)
            if not batch:
                return settled
            for item in batch:
                if self._halted():
                    return settled
                settlement = self._revoke(item)
                self._writer.settle([settlement])
                if settlement.state is ItemState.PENDING:
                    return settled
                rejected = settlement.state is ItemState.REJECTED
                self._on_settled(int(not rejected), int(rejected))
                settled += 1
        return settled

    def _revoke(self, item: OutboxItem) -> Settlement:
        assert item.kind is ItemKind.REVOKE
        try:
            result = self._stub.RevokeCertificate(
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
                and self._writer.item_state(item.after_id) is ItemState.PENDING
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
    """One PushCertificates call of one stream: a request generator bounded by a semaphore,
    a response loop that settles items, and a watchdog that cancels a stalled or stopped
    call."""

    def __init__(self, pusher: Pusher, lane: _Lane, producer_done: threading.Event) -> None:
        self._p = pusher
        self._lane = lane
        self._producer_done = producer_done
        self._window = threading.BoundedSemaphore(pusher._in_flight)
        self._inflight: dict[str, OutboxItem] = {}
        self._ended = threading.Event()
        self._stalled = threading.Event()
        self._transient: list[str] = []
        self._last_progress = time.monotonic()

    def _closing(self) -> bool:
        return self._p._halted() or self._ended.is_set() or bool(self._transient)

    def _requests(self) -> Iterator[ingest_pb2.PushRequest]:
        cursor = 0
        while not self._closing():
            done = self._producer_done.is_set()
            items = self._lane.pending(after_id=cursor, limit=self._p._in_flight)
            if not items:
                if done:
                    return
                self._p._stop.wait(IDLE_POLL_SECONDS)
                continue
            for item in items:
                while not self._window.acquire(timeout=IDLE_POLL_SECONDS):
                    if self._closing():
                        return
                if not self._inflight:
                    self._last_progress = time.monotonic()
                self._inflight[str(item.id)] = item
                cursor = item.id
                yield ingest_pb2.PushRequest(
                    envelope=item.envelope,
                    attachment=item.attachment or b"",
                    client_ref=str(item.id),
                )

    def _watch(self, call: grpc.RpcContext) -> None:
        while not self._ended.wait(IDLE_POLL_SECONDS * 4):
            idle = time.monotonic() - self._last_progress
            stopping = self._p._halted()
            if stopping or (self._inflight and idle > RESULT_TIMEOUT_SECONDS):
                if not stopping:
                    self._stalled.set()
                call.cancel()
                return

    def run(self) -> None:
        lane = self._lane

        def settled(acked: int, rejected: int) -> None:
            lane.settled_total += acked + rejected
            self._p._on_settled(acked, rejected)

        results = _Results(lane.writer, settled, [], time.monotonic())
        call = lane.stub.PushCertificates(self._requests())
        guard = threading.Thread(
            target=self._watch, args=(call,), name="push-watchdog", daemon=True
        )
        guard.start()
        try:
            for result in call:
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
        finally:
            self._ended.set()
            results.flush()
            guard.join()
        if self._transient:
            raise _Transient(f"hub answered {self._transient[0]}")

    def _failed(self, error: grpc.RpcError) -> None:
        if self._p._halted():
            return
        if self._stalled.is_set():
            raise _Transient(
                f"no result for {RESULT_TIMEOUT_SECONDS:.0f}s with {len(self._inflight)} in flight"
            ) from error
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
