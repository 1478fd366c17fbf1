"""No raw ID reaches the audit log through any RPC (issue 12, build item 5): every method of
every certhub service is called, by every kind of principal and by a client certificate
whose CN is a resident ID, with ID-shaped strings in every text field (all at once, and one
field at a time over a plausible request, so calls get past the first check); then the
SQLite database file (and its WAL) and a pg_dump of the PostgreSQL database are searched for
the raw strings: none may be in an audit row.

A raw string may only be found in a table that is not the audit log, and then only where
the test itself put a valid ID on purpose (none here): the sweep's requests are refused or
answered without storing their free text, so the expected count is zero everywhere.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import descriptor, message
from google.protobuf.message_factory import GetMessageClass
from sqlalchemy import text
from support.hubs import RunningHub
from support.intake import push_licence

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.demo.world import DemoWorld, citizen, enterprise
from certhub.hub.store.engine import session_scope
from certhub.v1 import audit_pb2, citizen_pb2, directory_pb2, ingest_pb2, intake_pb2

SERVICES = [
    service
    for module in (ingest_pb2, intake_pb2, directory_pb2, audit_pb2, citizen_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
]
# The tables of the permanent log: what must never hold a raw ID.
AUDIT_TABLES = ("audit_entries", "audit_certificates")
# Nested messages filled this deep (the contract nests at most three levels).
MAX_DEPTH = 4
# One call's deadline: refusals are answered in milliseconds; a loaded machine needs more.
CALL_SECONDS = 20.0


class Ids:
    """Distinct ID-shaped strings, one per use, of every shape the redaction knows."""

    def __init__(self) -> None:
        self.used: list[str] = []
        self._n = itertools.count(300)

    def next(self) -> str:
        n = next(self._n)
        shape = n % 5
        if shape == 0:
            value = citizen(n).holder.id  # 18-character resident ID
        elif shape == 1:
            value = enterprise(n).holder.id  # USCC with its check character
        elif shape == 2:
            value = f"139{n:08d}"  # mobile number
        elif shape == 3:
            value = f"6222{n:012d}"  # bank card
        else:
            value = f"GL-{citizen(n).holder.id}"  # a resident ID inside a case-like text
        self.used.append(value)
        return value


def string_paths(desc: descriptor.Descriptor, depth: int = 0) -> list[tuple[str, ...]]:
    """Every string field reachable from ``desc``, as a path of field names."""
    paths: list[tuple[str, ...]] = []
    for field in desc.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            paths.append((field.name,))
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE and depth < MAX_DEPTH:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                paths.append((field.name, "<map>"))
                continue
            paths.extend((field.name, *rest) for rest in string_paths(sub, depth + 1))
    return paths


def set_path(msg: message.Message, path: tuple[str, ...], value: str) -> None:
    field = msg.DESCRIPTOR.fields_by_name[path[0]]
    repeated = field.is_repeated
    if len(path) == 1:
        if repeated:
            getattr(msg, path[0]).append(value)
        else:
            setattr(msg, path[0], value)
        return
    if path[1] == "<map>":
        getattr(msg, path[0])[value] = value
        return
    container = getattr(msg, path[0])
    child = (
        container.add() if repeated and not container else (container[0] if repeated else container)
    )
    set_path(child, path[1:], value)


def baseline(desc: descriptor.Descriptor, world: DemoWorld, holder: str) -> message.Message:
    """A plausible request: a real service item, a plain case number, a known holder."""
    msg = GetMessageClass(desc)()
    item = world.item_by_name("公共场所卫生许可（新办）").code
    plausible = {
        "service_item_code": item,
        "case_number": "GL-2026-000001",
        "id": holder,
        "holder_id": holder,
        "department_code": world.type_by_name("营业执照").issuer,
        "material_code": "M01",
    }
    for path in string_paths(desc):
        if path[-1] in plausible:
            set_path(msg, path, plausible[path[-1]])
    for path in _enum_paths(desc):
        _set_enum(msg, path)
    return msg


def _enum_paths(desc: descriptor.Descriptor, depth: int = 0) -> Iterator[tuple[str, ...]]:
    for field in desc.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_ENUM:
            yield (field.name,)
        elif (
            field.type == descriptor.FieldDescriptor.TYPE_MESSAGE
            and depth < MAX_DEPTH
            and not field.message_type.GetOptions().map_entry
            and not field.is_repeated
        ):
            for rest in _enum_paths(field.message_type, depth + 1):
                yield (field.name, *rest)


def _set_enum(msg: message.Message, path: tuple[str, ...]) -> None:
    if len(path) > 1:
        _set_enum(getattr(msg, path[0]), path[1:])
        return
    field = msg.DESCRIPTOR.fields_by_name[path[0]]
    if field.is_repeated:
        return
    values = [v.number for v in field.enum_type.values if v.number != 0]
    if values:
        # USCC for a holder's id_type (the baseline holder is an enterprise).
        names = {v.name: v.number for v in field.enum_type.values}
        setattr(msg, path[0], names.get("USCC", values[0]))


def requests(
    world: DemoWorld, ids: Ids, holder: str
) -> Iterator[tuple[str, message.Message, bool]]:
    """(full method path, request, streaming) for every method: all strings ID-shaped, then
    each string alone ID-shaped over the baseline."""
    for service in SERVICES:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            streaming = method.client_streaming
            desc = method.input_type
            everything = baseline(desc, world, holder)
            for field in string_paths(desc):
                set_path(everything, field, ids.next())
            yield path, everything, streaming
            for field in string_paths(desc):
                one = baseline(desc, world, holder)
                set_path(one, field, ids.next())
                yield path, one, streaming


def call(client: HubClient, path: str, request: message.Message, streaming: bool) -> str:
    """The call's status code name; a bug (INTERNAL) or a hang fails the caller's check."""
    serialize = type(request).SerializeToString
    try:
        if streaming:
            stub = client.channel.stream_stream(
                path, request_serializer=serialize, response_deserializer=lambda b: b
            )
            list(stub(iter([request]), timeout=CALL_SECONDS))
        else:
            stub_unary = client.channel.unary_unary(
                path, request_serializer=serialize, response_deserializer=lambda b: b
            )
            stub_unary(request, timeout=CALL_SECONDS)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code.name
    return "OK"


def id_named_client(running: RunningHub, tmp_path: Path, name: str) -> HubClient:
    """A client certificate of the hub's CA whose CN (and principal SAN) is ``name``."""
    pki = running.config.pki
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "id-named.pem", tmp_path / "id-named.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return HubClient.connect(
        running.address, ClientTLS(ca=pki.ca_cert, cert=cert_path, key=key_path)
    )


def test_no_rpc_puts_a_raw_id_into_the_audit_log(
    running_hub: RunningHub, world: DemoWorld, tmp_path: Path
) -> None:
    pushed = push_licence(running_hub, world, 61)
    ids = Ids()
    principals = sorted({p.name for p in world.principals})
    clients = [running_hub.client(name) for name in principals]
    clients.append(id_named_client(running_hub, tmp_path, ids.next()))
    calls = 0
    codes: dict[str, int] = {}
    called: set[str] = set()
    try:
        for path, request, streaming in requests(world, ids, pushed.holder_id):
            for client in clients:
                code = call(client, path, request, streaming)
                # Refusals are the point; a bug (INTERNAL) or a hang is not.
                assert code not in ("INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"), (path, code)
                codes[code] = codes.get(code, 0) + 1
                calls += 1
                called.add(path)
    finally:
        for client in clients:
            client.close()
    # Every method, by every principal, at least once; most calls are refused.
    assert called == {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}
    assert calls >= len(called) * len(clients)
    assert codes.get("OK", 0) > 0, codes
    raw = sorted(set(ids.used))
    with session_scope(running_hub.hub.sessions) as session:
        entries = session.execute(text("SELECT count(*) FROM audit_entries")).scalar_one()
    # Most calls left an entry (the directory's reads and the log's own proofs do not).
    assert entries > calls // 2

    url = running_hub.engine.url
    if url.get_backend_name() == "sqlite":
        found = sqlite_hits(Path(str(url.database)), raw)
    else:
        found = postgresql_hits(running_hub, raw)
    assert found == {}, f"raw IDs found: {found}"


def sqlite_hits(path: Path, raw: list[str]) -> dict[str, list[str]]:
    """Raw strings found in the database file or its WAL, by table (``?`` when no table's
    rows hold it: a copy somewhere else in the file)."""
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        data += wal.read_bytes()
    hits: dict[str, list[str]] = {}
    present = [value for value in raw if value.encode() in data]
    if not present:
        return hits
    dump = subprocess.run(
        ["sqlite3", str(path), ".dump"], capture_output=True, check=True
    ).stdout.decode("utf-8", "replace")
    tables = _sqlite_tables(dump)
    for value in present:
        where = [t for t, body in tables.items() if value in body or value.encode().hex() in body]
        for table in where or ["?"]:
            hits.setdefault(table, []).append(value)
    return hits


def _sqlite_tables(dump: str) -> dict[str, str]:
    tables: dict[str, str] = {}
    for line in dump.splitlines():
        match = re.match(r'INSERT INTO "?(\w+)"?', line)
        if match:
            tables[match.group(1)] = tables.get(match.group(1), "") + line.lower() + "\n"
    return tables


def postgresql_hits(running: RunningHub, raw: list[str]) -> dict[str, list[str]]:
    """Raw strings (or their hex, as bytea columns dump) in a pg_dump of the database, by
    the table whose COPY block holds them."""
    url = running.engine.url
    dumped = subprocess.run(
        [
            "pg_dump", "--data-only", "--no-owner", "-h", url.host or "127.0.0.1",
            "-p", str(url.port or 5432), "-U", url.username or "postgres", url.database or "",
        ],
        capture_output=True, check=True,
    ).stdout.decode("utf-8", "replace")  # fmt: skip
    blocks: dict[str, str] = {}
    table = None
    for line in dumped.splitlines():
        start = re.match(r"COPY public\.(\w+) ", line)
        if start:
            table = start.group(1)
            continue
        if line == "\\.":
            table = None
            continue
        if table is not None:
            blocks[table] = blocks.get(table, "") + line + "\n"
    hits: dict[str, list[str]] = {}
    for value in raw:
        needles = (value, value.lower(), value.encode().hex())
        for name, body in blocks.items():
            if any(n in body for n in needles):
                hits.setdefault(name, []).append(value)
    return hits


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_the_sweep_knows_the_audit_tables(table: str) -> None:
    # The tables searched are the log's: a rename would make the sweep vacuous.
    from certhub.hub.store.models import Base  # noqa: PLC0415

    assert table in Base.metadata.tables
