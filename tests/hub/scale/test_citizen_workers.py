"""Single use across real processes (issue 14): `certhub serve --workers 2` on PostgreSQL,
windows on 8 channels spread over both worker processes. Each presentation token is
redeemed by all of them at the same moment and answered OK exactly once; an approved
consent is used by exactly one of 8 simultaneous fetches."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.served import Deployment, ServedHub, prepare_deployment, serve

from certhub.core.rpc.client import HubClient, HubClientError
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoWorld,
    certificate_payload,
    citizen,
    sign_certificate,
)
from certhub.hub.store.models import ConsentRequest

# Windows, at least: more are opened until both workers hold one.
CHANNELS = 8
TOKENS = 6
WINDOW = "gulou-service-centre"
ITEM = "350102-0001"
CONSENT_ITEM = "350102-0002"

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def served(deployment: Deployment, world: DemoWorld) -> Iterator[ServedHub]:
    items = {
        code: dataclasses.replace(item, consent_required=code == CONSENT_ITEM)
        for code, item in world.items.items()
    }
    registry = dataclasses.replace(world, items=items).registry_toml()
    prepare_deployment(deployment.data_dir, deployment.engine, registry)
    hub = serve(deployment.data_dir, deployment.db_url, workers=2)
    yield hub
    hub.kill()


def _all_at_once(windows: list[HubClient], call: Callable[[HubClient], str]) -> list[str]:
    barrier = threading.Barrier(len(windows))
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(window: HubClient) -> None:
        barrier.wait()
        try:
            outcome = call(window)
        except HubClientError as error:
            outcome = error.reason
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(w,)) for w in windows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_tokens_and_approvals_are_used_once_across_worker_processes(
    served: ServedHub, deployment: Deployment, world: DemoWorld
) -> None:
    holder = citizen(404)
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(world, world.type_by_name("营业执照").code, holder, serial=404)
    with served.client(amr.principal) as department:
        department.push(sign_certificate(payload, [amr.key]))
    applicant = {"id_type": "RESIDENT_ID", "holder_id": holder.holder.id}
    windows = served.clients_on_every_worker(WINDOW, at_least=CHANNELS)
    try:
        others = len(windows) - 1

        with served.client(CITIZEN_APP) as app:
            tokens = [app.create_presentation(payload.certificate_id, **applicant).token]
            tokens += [
                app.create_presentation(payload.certificate_id, **applicant).token
                for _ in range(TOKENS - 1)
            ]
        for n, token in enumerate(tokens):
            outcomes = _all_at_once(
                windows,
                lambda w, t=token, n=n: (
                    w.redeem_presentation(t, service_item=ITEM, case_number=f"QR-{n}") and "OK"
                ),
            )
            assert outcomes == ["OK"] + ["PRESENTATION_REPLAYED"] * others, outcomes

        case = "CONSENT-RACE"
        with pytest.raises(HubClientError) as asked:
            windows[0].fetch(service_item=CONSENT_ITEM, case_number=case, **applicant)
        with served.client(CITIZEN_APP) as app:
            app.decide_consent(
                asked.value.metadata["consent_request_id"], approve=True, **applicant
            )
        outcomes = _all_at_once(
            windows,
            lambda w: (
                "shared"
                if w.fetch(service_item=CONSENT_ITEM, case_number=case, **applicant).certificates
                else "empty"
            ),
        )
        assert outcomes == ["CONSENT_PENDING"] * others + ["shared"], outcomes
    finally:
        for window in windows:
            window.close()
    with Session(deployment.engine) as session:
        rows = session.execute(
            select(ConsentRequest.status, func.count())
            .where(ConsentRequest.case_number == case)
            .group_by(ConsentRequest.status)
        ).all()
    # The approval used once; the fetches that came second share one new request.
    assert dict(rows) == {"USED": 1, "PENDING": 1}
