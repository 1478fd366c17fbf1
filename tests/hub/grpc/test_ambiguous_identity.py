"""A client certificate must name one principal: two subject CNs, or a subject alternative
name naming another principal than the CN, is refused at the edge over real mTLS
(UNAUTHENTICATED, reason AMBIGUOUS_CLIENT_CERTIFICATE, audited), even though the hub's own CA
signed it and its first CN is a registered principal (issue 12, build item 6)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support.hubs import RunningHub
from support.intake import WINDOW
from support.probes import assert_audited_refusal, refused, snapshot

from certhub.core.rpc.client import ClientTLS, HubClient
from certhub.hub.pki import PRINCIPAL_URI_PREFIX

AUDITOR = "gulou-audit-office"


def issue(
    running: RunningHub, tmp_path: Path, common_names: list[str], san_principals: list[str]
) -> ClientTLS:
    """A client certificate signed by the hub's own CA, with exactly these names."""
    pki = running.config.pki
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in common_names]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(PRINCIPAL_URI_PREFIX + n) for n in san_principals]
            ),
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    stem = tmp_path / f"client-{len(list(tmp_path.glob('client-*.pem')))}"
    cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ClientTLS(ca=pki.ca_cert, cert=cert_path, key=key_path)


@pytest.mark.parametrize(
    ("common_names", "san_principals", "problem"),
    [
        ([WINDOW, AUDITOR], [WINDOW], "has 2 subject CNs"),
        ([AUDITOR, WINDOW], [AUDITOR], "has 2 subject CNs"),
        ([WINDOW], [WINDOW, AUDITOR], "1 other principal(s) in its subject alternative names"),
        ([WINDOW], [AUDITOR], "1 other principal(s) in its subject alternative names"),
    ],
)
def test_an_ambiguous_client_certificate_is_refused_at_the_edge(
    running_hub: RunningHub,
    tmp_path: Path,
    common_names: list[str],
    san_principals: list[str],
    problem: str,
) -> None:
    tls = issue(running_hub, tmp_path, common_names, san_principals)
    before = snapshot(running_hub.engine)
    with HubClient.connect(running_hub.address, tls) as client:
        error = refused(grpc.StatusCode.UNAUTHENTICATED, client.stats)
        # Streams go through the same edge.
        streamed = refused(grpc.StatusCode.UNAUTHENTICATED, lambda: list(client.push_stream([])))
    assert error.reason == "AMBIGUOUS_CLIENT_CERTIFICATE"
    assert problem in error.message
    assert streamed.reason == "AMBIGUOUS_CLIENT_CERTIFICATE"
    assert snapshot(running_hub.engine) == before
    row = assert_audited_refusal(running_hub.engine, error)
    assert row.action == "refused"


def test_a_certificate_naming_one_principal_twice_consistently_is_served(
    running_hub: RunningHub, tmp_path: Path
) -> None:
    # The control: the same builder, one CN and its own SAN, is an ordinary caller.
    tls = issue(running_hub, tmp_path, [AUDITOR], [AUDITOR])
    with HubClient.connect(running_hub.address, tls) as client:
        client.stats()
