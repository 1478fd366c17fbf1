"""Steady traffic against a running hub while a fault happens: window clients fetching and a
department pushing, each call recorded with when it started, how long it took and its
status, and every push the hub acknowledged remembered (it must survive the fault).

Used by the fault tests (a handful of threads) and by bench/load_test.py (64 clients).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from certhub.core.rpc.client import HubClient
from certhub.hub.demo.world import (
    DemoDepartment,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
)
from certhub.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc, intake_pb2, intake_pb2_grpc
from support.served import wait_for

WINDOW = "gulou-service-centre"
# A service item whose materials include the business licence the department pushes, so a
# fetch for it reads (and returns) the pushed certificates.
ITEM = "公共场所卫生许可（新办）"
LICENCE = "营业执照"
OK = "OK"
# Calls each thread of a Load completes in a phase of a fault test before the test moves on
# (``Load.phase_done``): several per thread, so every kind of call met the phase's condition,
# however fast or slow the machine is (this replaces phases of a fixed two seconds).
PHASE_CALLS_PER_THREAD = 5
# How long a phase may take to see those calls: a call's deadline is at most 10 s in the
# fault tests, and a loaded 2-core machine answers slowly.
PHASE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Call:
    kind: str  # "fetch" or "push"
    started: float  # time.monotonic() when the call was made
    seconds: float
    code: str  # OK or the gRPC status name
    message: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.seconds


@dataclass
class Load:
    """``fetchers`` window threads and ``pushers`` department threads, each on its own channel,
    calling until ``stop()``. Holders ``first_holder ..`` are fetched; pushes create new
    certificates for holders from ``first_push_holder`` on (one fresh serial each)."""

    world: DemoWorld
    connect: Callable[[str], HubClient]
    fetchers: int
    pushers: int = 1
    deadline: float = 5.0
    holders: int = 8
    first_holder: int = 700_000
    first_push_holder: int = 800_000
    # Seconds between one thread's calls (0: back to back).
    pause: float = 0.0
    # Distinct case numbers per fetching thread, reused in turn (0: a new case every fetch,
    # like windows taking new applicants; a bound keeps the hub's per-process memory of
    # recorded cases from growing during a memory measurement).
    cases: int = 0
    calls: list[Call] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _clients: list[HubClient] = field(default_factory=list)
    _serials: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def department(self) -> DemoDepartment:
        return self.world.departments[self.world.type_by_name(LICENCE).issuer]

    def seed(self) -> None:
        """Give every fetched holder one licence, so fetches return something."""
        with self.connect(self.department.principal) as client:
            for n in range(self.holders):
                client.push(self._envelope(self.first_holder + n, serial=900_000 + n))

    def start(self) -> None:
        for n in range(self.fetchers):
            self._spawn(f"fetch-{n}", WINDOW, self._fetch_loop, n)
        for n in range(self.pushers):
            self._spawn(f"push-{n}", self.department.principal, self._push_loop, n)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        for c in self._clients:
            c.close()

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what happened ---------------------------------------------------------------------

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def failures(self) -> list[Call]:
        return [c for c in self.snapshot() if c.code != OK]

    def calls_since(self, moment: float, kind: str | None = None) -> list[Call]:
        """The calls (of ``kind``, or any) started at or after ``moment`` and answered."""
        return [
            c for c in self.snapshot() if c.started >= moment and (kind is None or c.kind == kind)
        ]

    def phase_done(self, since: float, per_thread: int = PHASE_CALLS_PER_THREAD) -> bool:
        """Whether fetches and pushes both ran through a phase that began at ``since``:
        ``per_thread`` calls answered (OK or not) for each fetching and each pushing thread."""
        calls = self.calls_since(since)
        fetches = sum(1 for c in calls if c.kind == "fetch")
        pushes = len(calls) - fetches
        return fetches >= per_thread * self.fetchers and pushes >= per_thread * self.pushers

    def phase(self, what: str) -> float:
        """Let traffic run from now until ``phase_done``; returns when the phase began."""
        began = time.monotonic()
        wait_for(
            lambda: self.phase_done(began),
            timeout=PHASE_TIMEOUT,
            what=f"fetches and pushes {what}",
        )
        return began

    def first_ok_after(self, moment: float, kind: str = "fetch") -> Call | None:
        done = [
            c for c in self.snapshot() if c.kind == kind and c.code == OK and c.started >= moment
        ]
        return min(done, key=lambda c: c.ended, default=None)

    # --- the threads -----------------------------------------------------------------------

    def _spawn(
        self, name: str, principal: str, loop: Callable[[HubClient, int], None], n: int
    ) -> None:
        client = self.connect(principal)
        self._clients.append(client)
        thread = threading.Thread(target=loop, args=(client, n), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _timed(self, kind: str, invoke: Callable[[], object]) -> object | None:
        started = time.monotonic()
        try:
            result = invoke()
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            self._record(
                Call(kind, started, time.monotonic() - started, code.name, error.details() or "")
            )
            return None
        self._record(Call(kind, started, time.monotonic() - started, OK))
        return result

    def _fetch_loop(self, client: HubClient, n: int) -> None:
        stub = intake_pb2_grpc.IntakeServiceStub(client.channel)
        item = self.world.item_by_name(ITEM).code
        for k in itertools.count():
            if self._stop.is_set():
                return
            holder = enterprise(self.first_holder + (n + k) % self.holders).holder.id
            request = intake_pb2.FetchRequest(
                holder=common_pb2.Holder(id_type=common_pb2.USCC, id=holder),
                service_item_code=item,
                case_number=f"LOAD-{n}-{k % self.cases if self.cases else k}",
            )
            self._timed(
                "fetch", functools.partial(stub.FetchCertificates, request, timeout=self.deadline)
            )
            if self.pause:
                self._stop.wait(self.pause)

    def _push_loop(self, client: HubClient, n: int) -> None:
        stub = ingest_pb2_grpc.IngestServiceStub(client.channel)
        while not self._stop.is_set():
            serial = next(self._serials)
            envelope = self._envelope(self.first_push_holder + serial, serial=serial)
            request = ingest_pb2.PushRequest(envelope=envelope, client_ref=f"{n}-{serial}")
            result = self._timed(
                "push", functools.partial(stub.PushCertificate, request, timeout=self.deadline)
            )
            if isinstance(result, ingest_pb2.PushResult) and result.outcome == ingest_pb2.ACCEPTED:
                with self._lock:
                    self.acknowledged.append(result.certificate_id)
            if self.pause:
                self._stop.wait(self.pause)

    def _envelope(self, holder: int, *, serial: int) -> bytes:
        licence = self.world.type_by_name(LICENCE)
        payload = certificate_payload(self.world, licence.code, enterprise(holder), serial=serial)
        return sign_certificate(payload, [self.department.key])


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
