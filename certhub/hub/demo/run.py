"""`certhub demo`: a whole district in one command, on the embedded defaults.

Initialises the PKI in a data dir, applies the demo registry, starts the hub on loopback
with mTLS, lets every department push signed certificates for 60 citizens and 60
enterprises, fetches as a service window for real cases (verifying every signature
offline), shows a revocation taking effect, and prints the KPI report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.app import Hub
from certhub.hub.casework import Casework
from certhub.hub.demo.citizen import show_applicants_in_control, with_consent
from certhub.hub.demo.feeds import DemoFeeds
from certhub.hub.demo.history import WINDOWS, backfill, handling_department
from certhub.hub.demo.world import (
    DemoWorld,
    build_world,
    citizen,
    enterprise,
    sample_certificates,
    sign_certificate,
)
from certhub.hub.grpc.server import ServerTLS, build_server
from certhub.hub.pki import PkiPaths, init_pki, issue_client_certificate
from certhub.hub.reports import render, render_period
from certhub.hub.runtime import HubConfig, build_hub, open_engine
from certhub.hub.services import stats
from certhub.hub.services.registry_store import apply_registry
from certhub.hub.store import migrate
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.hub.web.console import Targets
from certhub.hub.web.run import DEFAULT_CONSOLE_ADDRESS, browser_bundle, serve_forever
from certhub.hub.web.server import ConsoleTLS, RunningConsole
from certhub.v1 import ingest_pb2, intake_pb2

DEMO_HOLDERS = 60
DEMO_CASES = 12
# Months of past cases written before the live ones (`certhub demo --months N`): a year
# charts a trend, and its ~2,880 cases are of the size of the Gulou reform's 2,864.
DEMO_MONTHS = 12
# `--serve`: the principals whose browser certificates the demo writes for the console.
CONSOLE_PRINCIPALS = ("gulou-audit-office", "gulou-operator")
# Password of those PKCS#12 files: browsers refuse to import a bundle without one. A demo
# value, printed next to the file; real deployments issue their own.
BUNDLE_PASSWORD = "certhub"  # noqa: S105 - a demo's throwaway bundle, printed beside it


# Written into a kept demo dir: a later `certhub demo --data-dir` into the same folder may
# replace what is there (a demo's department keys are made anew on every run, so its old
# certificates could not verify against the new registry), and nothing else is ever removed.
DEMO_MARKER = ".certhub-demo"


class DemoDirError(Exception):
    """The folder given to keep the demo in holds something that is not a previous demo."""


@contextlib.contextmanager
def _data_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        # Absolute: the adapter configs written inside it name its files, and a relative
        # path would be read relative to the config's own folder (demo-data/.../demo-data).
        keep = keep.resolve()
        if keep.is_dir() and any(keep.iterdir()):
            if not (keep / DEMO_MARKER).is_file():
                raise DemoDirError(
                    f"{keep} is not empty and holds no previous demo: choose a new folder"
                )
            for entry in keep.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        keep.mkdir(parents=True, exist_ok=True)
        (keep / DEMO_MARKER).write_text(
            "made by `certhub demo`; the next run into this folder replaces it\n",
            encoding="utf-8",
        )
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="certhub-demo-") as tmp:
        yield Path(tmp)


def run_demo(
    *,
    data_dir: Path | None = None,
    months: int = DEMO_MONTHS,
    serve: bool = False,
    console_address: str = DEFAULT_CONSOLE_ADDRESS,
    out: Callable[[str], None] = print,
) -> int:
    world = with_consent(build_world())
    with _data_dir(data_dir) as root:
        config = HubConfig(data_dir=root, address="127.0.0.1:0")
        pki = init_pki(root)
        registry_file = root / "registry.toml"
        registry_file.write_text(world.registry_toml(), encoding="utf-8")
        engine = open_engine(config)
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        with session_scope(sessions, write=True) as session:
            history = backfill(session, world, months=months, now=dt.datetime.now(dt.UTC))
        if history.months:
            out(
                f"history    {history.cases:,} cases over {history.months} months "
                f"({history.with_e_certificate:,} with an e-certificate), "
                f"{history.registries} earlier registries"
            )
        with session_scope(sessions, write=True) as session:
            apply_registry(
                session, registry_file.read_text(encoding="utf-8"), now=dt.datetime.now(dt.UTC)
            )
        out(f"data dir   {root}")
        out(
            f"registry   {len(world.departments)} departments, "
            f"{len(world.types)} certificate types, "
            f"{len(world.items)} service items"
        )
        hub = build_hub(config, engine)
        tls = ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert)
        server = build_server(hub, address=config.address, tls=tls)
        address = f"localhost:{server.port}"
        out(f"hub        serving on {address} (mTLS)")

        def client(principal: str) -> HubClient:
            cert, key = issue_client_certificate(pki, principal)
            return HubClient.connect(address, ClientTLS(ca=pki.ca_cert, cert=cert, key=key))

        try:
            # Two departments run real adapters (a database, a folder of exports); the
            # others push directly.
            feeds = DemoFeeds(
                world=world, root=root, pki=pki, address=address, holders=DEMO_HOLDERS, out=out
            )
            feeds.run()
            _push_all(world, client, out, skip=feeds.departments)
            _fetch_cases(world, client, out)
            _revoke_one(world, client, out, cancel=feeds.cancel)
            show_applicants_in_control(
                world,
                client,
                out,
                qr_file=root / "presentation-qr.png" if data_dir is not None else None,
            )
            period = Casework(hub).period_stats_now(stats.StatsQuery(by=(stats.Breakdown.MONTH,)))
            out("")
            out("KPIs")
            out(render(period.base, hub.registry()))
            out(render_period(period))
            if serve:
                _serve(hub, pki, address=address, console_address=console_address, out=out)
        finally:
            server.stop(grace=None)
            hub.close()
            engine.dispose()
        if data_dir is not None:
            out(f"\nkept in {root}: run `certhub serve --data-dir {root}` to explore")
    return 0


def _serve(
    hub: Hub,
    pki: PkiPaths,
    *,
    address: str,
    console_address: str,
    out: Callable[[str], None],
) -> None:
    """Leave the hub serving and add the console beside it until Ctrl-C."""
    bundles = []
    for principal in CONSOLE_PRINCIPALS:
        cert, key = issue_client_certificate(pki, principal)
        bundle = cert.with_suffix(".p12")
        bundle.write_bytes(browser_bundle(cert, key, password=BUNDLE_PASSWORD, name=principal))
        bundles.append(bundle)

    def ready(running: RunningConsole) -> None:
        out("")
        out(f"console    {running.url}dashboard   (operators and auditors)")
        out(f"public     {running.url}transparency")
        for bundle in bundles:
            out(f"           browser certificate {bundle} (password {BUNDLE_PASSWORD})")
        out(f"hub        {address} (mTLS), data in {pki.root}")
        out("           Ctrl-C stops both")

    serve_forever(
        Casework(hub),
        address=console_address,
        tls=ConsoleTLS.from_pki(pki),
        targets=Targets(),
        ready=ready,
    )


def _push_all(
    world: DemoWorld,
    client: Callable[[str], HubClient],
    out: Callable[[str], None],
    *,
    skip: frozenset[str] = frozenset(),
) -> None:
    by_department: dict[str, list[bytes]] = defaultdict(list)
    for department, payload in sample_certificates(world, holders=DEMO_HOLDERS):
        if department.code in skip:
            continue
        by_department[department.code].append(sign_certificate(payload, [department.key]))
    outcomes: Counter[str] = Counter()
    for code, envelopes in by_department.items():
        department = world.departments[code]
        requests = (
            ingest_pb2.PushRequest(envelope=e, client_ref=str(n)) for n, e in enumerate(envelopes)
        )
        with client(department.principal) as adapter:
            for result in adapter.push_stream(requests, timeout=120):
                outcomes[ingest_pb2.PushOutcome.Name(result.outcome)] += 1
        out(f"push       {department.name}: {len(envelopes)} signed certificates")
    out(f"push       outcomes {dict(outcomes)}")


def _fetch_cases(
    world: DemoWorld, client: Callable[[str], HubClient], out: Callable[[str], None]
) -> None:
    """Each case as a window handles it: registered, fetched, closed with how every
    material came (RegisterCase, FetchCertificates, CloseCase)."""
    licence = world.type_by_name("营业执照").code
    id_card = world.type_by_name("居民身份证").code
    # Cases as they arrive at a window: enterprises for business items, citizens for the rest.
    business = [i for i in world.items.values() if any(licence in m[2] for m in i.materials)]
    personal = [
        i
        for i in world.items.values()
        if i not in business and any(id_card in m[2] for m in i.materials)
    ]
    with client("gulou-service-centre") as window:
        for case in range(DEMO_CASES):
            holder = enterprise(case) if case % 2 == 0 else citizen(case)
            items = business if case % 2 == 0 else personal
            item = items[(case // 2) % len(items)]
            number = f"GL-2026-{case + 1:06d}"
            where, channel = WINDOWS[case % len(WINDOWS)]
            window.call(
                window.intake.RegisterCase,
                intake_pb2.RegisterCaseRequest(
                    case_number=number,
                    service_item_code=item.code,
                    channel=intake_pb2.CaseChannel.Value(f"CASE_CHANNEL_{channel}"),
                    department_code=handling_department(world, item),
                    window=where,
                ),
            )
            fetched = window.fetch(
                id_type=str(holder.holder.id_type),
                holder_id=holder.holder.id,
                service_item=item.code,
                case_number=number,
            )
            window.call(
                window.intake.CloseCase,
                intake_pb2.CloseCaseRequest(
                    case_number=number,
                    materials=[
                        intake_pb2.MaterialUse(
                            material_code=m.code,
                            source=intake_pb2.MATERIAL_SOURCE_E_CERTIFICATE,
                            certificate_id=m.certificate_ids[0],
                        )
                        if m.satisfied
                        else intake_pb2.MaterialUse(
                            material_code=m.code, source=intake_pb2.MATERIAL_SOURCE_PAPER
                        )
                        for m in fetched.materials
                    ],
                ),
            )
            if case == 0:
                out("")
                out(f"fetch      case GL-2026-000001 · {item.name} · {holder.name}")
                for c in fetched.certificates:
                    out(
                        f"  ✓ {c.payload['name']:<14} {c.status:<9} {c.certificate_id}  "
                        f"(signature verified offline, key {c.key_id[:12]}…)"
                    )
                for m in fetched.materials:
                    state = (
                        "paper" if m.paper_only else ("e-certificate" if m.satisfied else "missing")
                    )
                    out(f"  material {m.code} {m.name}: {state}")
                out(f"  audit entry #{fetched.audit_index}")
    out(f"fetch      {DEMO_CASES} cases registered, fetched and closed this month")


def _revoke_one(
    world: DemoWorld,
    client: Callable[[str], HubClient],
    out: Callable[[str], None],
    *,
    cancel: Callable[[str], None],
) -> None:
    company = enterprise(0)
    item = world.item_by_name("公共场所卫生许可（新办）")
    with client("gulou-service-centre") as window:
        before = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=item.code,
            case_number="GL-2026-900001",
        )
    licence = before.certificates[0]
    cancel(licence.payload["number"])  # in the department's database; its adapter revokes
    with client("gulou-service-centre") as window:
        after = window.fetch(
            id_type="USCC",
            holder_id=company.holder.id,
            service_item=item.code,
            case_number="GL-2026-900002",
        )
    status = next(
        c.status for c in after.certificates if c.certificate_id == licence.certificate_id
    )
    out("")
    out(f"revoke     {licence.payload['name']} of {company.name}: {licence.status} -> {status}")
