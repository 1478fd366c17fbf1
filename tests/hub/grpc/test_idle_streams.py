"""Idle push streams cost nothing: a province has hundreds of departments, each keeping a
stream open between batches. With the synchronous server each open stream held one of 64
call threads, so 64 idle departments stalled every window's fetch."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import grpc.aio
import pytest
from support.hubs import RunningHub

from certhub.hub.demo.world import DemoWorld, certificate_payload, enterprise, sign_certificate
from certhub.v1 import common_pb2, ingest_pb2_grpc, intake_pb2

IDLE_STREAMS = 1_000
# Streams per connection: below the HTTP/2 concurrent-stream limits peers commonly set.
STREAMS_PER_CHANNEL = 100
FETCHES = 50
# A fetch answered within this while 1,000 streams sit open has not queued behind them.
FETCH_DEADLINE_SECONDS = 10.0
# Threads the test itself adds (the stream holder and grpc's client-side pollers): a
# thread per open stream, as the synchronous server had, would be hundreds more.
TEST_THREADS = 8


async def _hold_idle_streams(running: RunningHub, principal: str, opened: threading.Event,
                             release: asyncio.Event) -> int:  # fmt: skip
    tls = running.tls_for(principal)
    channels = [
        grpc.aio.secure_channel(running.address, tls.credentials())
        for _ in range(IDLE_STREAMS // STREAMS_PER_CHANNEL)
    ]
    calls = []
    for channel in channels:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        calls.extend(stub.PushCertificates() for _ in range(STREAMS_PER_CHANNEL))
    # Every stream is authenticated and waiting for its first request once this answers.
    await asyncio.gather(*(call.wait_for_connection() for call in calls))
    opened.set()
    await release.wait()
    for call in calls:
        await call.done_writing()
    finished = sum([len([r async for r in call]) == 0 for call in calls])
    for channel in channels:
        await channel.close()
    return finished


@pytest.mark.slow
def test_a_thousand_idle_push_streams_do_not_stall_fetches(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    licence = world.type_by_name("营业执照")
    amr = world.departments[licence.issuer]
    item = world.item_by_name("公共场所卫生许可（新办）")
    company = enterprise(31)
    with running_hub.client(amr.principal) as department:
        department.push(
            sign_certificate(certificate_payload(world, licence.code, company, serial=1), [amr.key])
        )

    threads_before = threading.active_count()
    loop = asyncio.new_event_loop()
    opened = threading.Event()
    release = asyncio.Event()
    finished: list[int] = []
    holder = threading.Thread(
        target=lambda: finished.append(
            loop.run_until_complete(_hold_idle_streams(running_hub, amr.principal, opened, release))
        )
    )
    holder.start()
    try:
        assert opened.wait(60), "the idle streams were not all opened"
        # The hub serves every stream from its one loop: no thread per open stream.
        assert threading.active_count() - threads_before <= TEST_THREADS
        with running_hub.client("gulou-service-centre") as window:
            started = time.monotonic()
            for n in range(FETCHES):
                request = intake_pb2.FetchRequest(
                    holder=common_pb2.Holder(id_type=common_pb2.USCC, id=company.holder.id),
                    service_item_code=item.code,
                    case_number=f"GL-IDLE-{n}",
                )
                fetched = window.intake.FetchCertificates(request, timeout=FETCH_DEADLINE_SECONDS)
                assert [c.status for c in fetched.certificates] == [common_pb2.VALID]
            elapsed = time.monotonic() - started
    finally:
        loop.call_soon_threadsafe(release.set)
        holder.join(60)
        loop.close()
    assert finished == [IDLE_STREAMS], "every idle stream ended cleanly with no result"
    assert elapsed < FETCHES * FETCH_DEADLINE_SECONDS
