"""Issue 14 item 4: portable credentials. ExportCredential returns a W3C VC 2.0 secured as
``vc+jwt`` (EdDSA) by the hub; the web server serves the Bitstring Status List credential
it points at, and a revocation sets the credential's bit. Everything is checked with an
independent JOSE implementation (joserfc) against the hub's published JWK Set, over real
mTLS / HTTPS on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import ssl
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from support.hubs import RunningHub
from support.probes import audit_row, audit_size
from support.shared_hub import DATABASES, next_serial, serving_hub
from support.statements import recorded

from certhub.core.rpc.client import HubClientError
from certhub.hub.casework import Casework
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoHolder,
    DemoWorld,
    certificate_payload,
    citizen,
    sign_certificate,
    sign_revocation,
)
from certhub.hub.web.console import Console
from certhub.hub.web.server import ConsoleTLS, RunningConsole, start_console

ISSUER = "https://certhub.example.gov.cn/gulou"  # the demo registry's log origin


@pytest.fixture(scope="module", params=DATABASES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: DemoWorld
) -> Iterator[tuple[RunningHub, RunningConsole]]:
    root: Path = tmp_path_factory.mktemp(f"credentials-{request.param}")
    with serving_hub(root, request.param, world) as running:
        console = running.run(
            start_console(
                Console(Casework(running.hub)),
                host="127.0.0.1",
                port=0,
                tls=ConsoleTLS.from_pki(running.config.pki),
            )
        )
        try:
            yield running, console
        finally:
            running.run(console.stop())


def _get(running: RunningHub, console: RunningConsole, path: str) -> tuple[int, str, bytes]:
    context = ssl.create_default_context(cafile=str(running.config.pki.ca_cert))
    url = f"https://localhost:{console.port}{path}"
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def _verified(token: str, keys: KeySet) -> tuple[dict[str, Any], dict[str, Any]]:
    with warnings.catch_warnings():
        # RFC 9864 deprecates "EdDSA" for the fully-specified "Ed25519"; VC-JOSE-COSE and
        # the issue name EdDSA, which every JOSE library verifies.
        warnings.simplefilter("ignore")
        obj = jws.deserialize_compact(token, keys, algorithms=["EdDSA"])
    return obj.headers(), json.loads(obj.payload)


def _licensed(running: RunningHub, world: DemoWorld) -> tuple[DemoHolder, str, bytes]:
    holder = citizen(next_serial() % 900)
    amr = world.department_by_name("市场监督管理局")
    payload = certificate_payload(
        world, world.type_by_name("营业执照").code, holder, serial=next_serial()
    )
    envelope = sign_certificate(payload, [amr.key])
    with running.client(amr.principal) as client:
        client.push(envelope)
    return holder, payload.certificate_id, envelope


def _bit(encoded: str, index: int) -> int:
    assert encoded.startswith("u")  # multibase base64url, no padding
    data = base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4))
    bits = gzip.decompress(data)
    assert len(bits) * 8 >= 131_072
    return (bits[index // 8] >> (7 - index % 8)) & 1


def test_export_verify_and_revoke(
    served: tuple[RunningHub, RunningConsole], world: DemoWorld
) -> None:
    running, console = served
    holder, licence, envelope = _licensed(running, world)
    status, kind, body = _get(running, console, "/credentials/jwks.json")
    assert status == 200
    assert kind.startswith("application/jwk-set+json")
    keys = KeySet.import_key_set(json.loads(body))

    with running.client(CITIZEN_APP) as app:
        exported = app.export_credential(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    header, vc = _verified(exported.credential, keys)
    # VC-JOSE-COSE: the header; the claims set is the credential itself.
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "vc+jwt"
    assert header["kid"].startswith(f"{ISSUER}/credentials/jwks.json#")
    # VC Data Model 2.0 required and used properties.
    assert vc["@context"][0] == "https://www.w3.org/ns/credentials/v2"
    assert "VerifiableCredential" in vc["type"]
    assert vc["issuer"] == ISSUER
    assert vc["id"] == exported.credential_id
    assert vc["id"].startswith("urn:uuid:")
    assert vc["validFrom"].endswith("+08:00")
    subject = vc["credentialSubject"]
    assert subject["certificateId"] == licence
    assert subject["holder"]["id"] == holder.holder.id
    assert subject["name"] == "营业执照"
    [evidence] = vc["evidence"]
    assert evidence["type"]
    assert evidence["envelopeDigest"] == "sha256:" + hashlib.sha256(envelope).hexdigest()
    amr = world.department_by_name("市场监督管理局")
    assert evidence["departmentKeyId"] == amr.key.public_key.key_id
    entry, suspension = vc["credentialStatus"]
    assert entry["type"] == suspension["type"] == "BitstringStatusListEntry"
    assert entry["statusPurpose"] == "revocation"
    assert entry["statusListIndex"] == str(exported.status_list_index)
    assert entry["statusListCredential"] == exported.status_list_credential
    assert entry["id"] == f"{exported.status_list_credential}#{exported.status_list_index}"
    assert suspension["statusPurpose"] == "suspension"
    assert suspension["statusListIndex"] == entry["statusListIndex"]
    assert suspension["statusListCredential"] == f"{exported.status_list_credential}/suspension"
    assert 0 <= exported.status_list_index < 131_072
    made = audit_row(running.engine, exported.audit_index)
    assert (made.principal, made.action, made.outcome) == (CITIZEN_APP, "export_credential", "ok")
    assert made.leaf["certificate_ids"] == [licence]
    assert holder.holder.id not in str(made.leaf)

    path = exported.status_list_credential.removeprefix(ISSUER)
    assert path == "/status/1"
    status, kind, body = _get(running, console, path)
    assert (status, kind.split(";")[0]) == (200, "application/vc+jwt")
    list_header, status_list = _verified(body.decode(), keys)
    assert list_header["typ"] == "vc+jwt"
    assert status_list["id"] == exported.status_list_credential
    assert "BitstringStatusListCredential" in status_list["type"]
    assert status_list["issuer"] == ISSUER
    listed = status_list["credentialSubject"]
    assert listed["type"] == "BitstringStatusList"
    assert listed["statusPurpose"] == "revocation"
    assert _bit(listed["encodedList"], exported.status_list_index) == 0

    # Exporting again keeps the entry; a revocation sets the bit at once.
    with running.client(CITIZEN_APP) as app:
        again = app.export_credential(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    assert again.status_list_index == exported.status_list_index
    assert again.credential_id != exported.credential_id
    with running.client(amr.principal) as department:
        department.revoke(sign_revocation(licence, amr.key))
    _, _, body = _get(running, console, path)
    _, status_list = _verified(body.decode(), keys)
    assert _bit(status_list["credentialSubject"]["encodedList"], exported.status_list_index) == 1
    # A revoked certificate is not exported again.
    with running.client(CITIZEN_APP) as app, pytest.raises(HubClientError) as caught:
        app.export_credential(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CERTIFICATE_NOT_VALID",
    )


def test_an_unchanged_status_list_is_served_without_recomputing_it(
    served: tuple[RunningHub, RunningConsole], world: DemoWorld
) -> None:
    running, console = served
    holder, licence, _ = _licensed(running, world)
    with running.client(CITIZEN_APP) as app:
        exported = app.export_credential(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    path = exported.status_list_credential.removeprefix(ISSUER)
    first = _get(running, console, path)[2]
    # Every statement, the group commit's pipelined ones on PostgreSQL included.
    with recorded(running.engine) as statements:
        again = _get(running, console, path)[2]
    assert again == first
    assert statements, "the generation was read"
    assert not [s for s in statements if "credential_status" in s]


def test_an_altered_credential_does_not_verify(
    served: tuple[RunningHub, RunningConsole], world: DemoWorld
) -> None:
    running, console = served
    holder, licence, _ = _licensed(running, world)
    keys = KeySet.import_key_set(json.loads(_get(running, console, "/credentials/jwks.json")[2]))
    with running.client(CITIZEN_APP) as app:
        token = app.export_credential(
            licence, id_type="RESIDENT_ID", holder_id=holder.holder.id
        ).credential
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["credentialSubject"]["number"] = "FORGED"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(Exception, match="signature"):
        _verified(f"{header}.{forged}.{signature}", keys)


def test_export_refusals_and_unknown_lists(
    served: tuple[RunningHub, RunningConsole], world: DemoWorld
) -> None:
    running, console = served
    holder, licence, _ = _licensed(running, world)
    other, _, _ = _licensed(running, world)
    size = audit_size(running.engine)
    with running.client(CITIZEN_APP) as app:
        for certificate, who, code in (
            (licence, other, grpc.StatusCode.NOT_FOUND),
            ("no-such-certificate", holder, grpc.StatusCode.NOT_FOUND),
            ("", holder, grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(HubClientError) as caught:
                app.export_credential(certificate, id_type="RESIDENT_ID", holder_id=who.holder.id)
            assert caught.value.code is code
    assert audit_size(running.engine) == size + 3
    with running.client("gulou-service-centre") as window, pytest.raises(HubClientError) as role:
        window.export_credential(licence, id_type="RESIDENT_ID", holder_id=holder.holder.id)
    assert role.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert _get(running, console, "/status/999")[0] == 404
    assert _get(running, console, "/status/0")[0] == 404


def test_a_compromised_department_key_suspends(
    served: tuple[RunningHub, RunningConsole], world: DemoWorld
) -> None:
    """Last in the module: it marks the health department's key compromised."""
    running, console = served
    health = world.department_by_name("卫生健康")
    holder = citizen(next_serial() % 900)
    payload = certificate_payload(
        world, world.type_by_name("公共场所卫生许可证").code, holder, serial=next_serial()
    )
    with running.client(health.principal) as client:
        client.push(sign_certificate(payload, [health.key]))
    with running.client(CITIZEN_APP) as app:
        exported = app.export_credential(
            payload.certificate_id, id_type="RESIDENT_ID", holder_id=holder.holder.id
        )
    keys = KeySet.import_key_set(json.loads(_get(running, console, "/credentials/jwks.json")[2]))
    path = exported.status_list_credential.removeprefix(ISSUER)

    def bits() -> tuple[int, int]:
        found = []
        for purpose_path in (path, f"{path}/suspension"):
            status, _, body = _get(running, console, purpose_path)
            assert status == 200
            _, status_list = _verified(body.decode(), keys)
            subject = status_list["credentialSubject"]
            assert subject["statusPurpose"] == (
                "suspension" if "suspension" in purpose_path else "revocation"
            )
            found.append(_bit(subject["encodedList"], exported.status_list_index))
        return found[0], found[1]

    assert bits() == (0, 0)
    text = world.registry_toml()
    block = text.index(f'code = "{health.code}"')
    at = text.index('status = "active"', block)
    running.apply_registry(text[:at] + 'status = "compromised"' + text[at + 17 :])
    assert bits() == (0, 1)
