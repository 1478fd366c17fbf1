"""The development PKI and hub secrets: chains, names, usages, idempotence, file modes."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import stat
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certhub.hub.pki import (
    AUDIT_HMAC_KEY_BYTES,
    CA_VALIDITY_DAYS,
    HubSecrets,
    PkiError,
    PkiPaths,
    init_hub_secrets,
    init_pki,
    issue_client_certificate,
    principal_from_certificate,
)
from certhub.signing.keys import Algorithm

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def pki(tmp_path: Path) -> PkiPaths:
    return init_pki(tmp_path)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def test_init_creates_a_ca_and_a_server_certificate_that_verify(pki: PkiPaths) -> None:
    ca = load_cert(pki.ca_cert)
    server = load_cert(pki.server_cert)

    ca.verify_directly_issued_by(ca)
    server.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    assert load_key(pki.ca_key).public_key() == ca.public_key()
    assert load_key(pki.server_key).public_key() == server.public_key()
    assert isinstance(load_key(pki.server_key).curve, ec.SECP256R1)
    assert pki.ca_cert == pki.root / "pki" / "ca.crt"

    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificate_passes_a_tls_style_path_validation(pki: PkiPaths) -> None:
    """The checks a TLS client makes: chain, validity, SAN against the host, serverAuth."""
    store = Store([load_cert(pki.ca_cert)])
    server = load_cert(pki.server_cert)
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier = PolicyBuilder().store(store).time(now()).build_server_verifier(name)
        assert verifier.verify(server, [])[-1] == load_cert(pki.ca_cert)
    wrong_host = (
        PolicyBuilder()
        .store(store)
        .time(now())
        .build_server_verifier(x509.DNSName("hub.example.gov.cn"))
    )
    with pytest.raises(VerificationError):
        wrong_host.verify(server, [])


def test_client_certificate_chains_to_the_ca_and_names_the_principal(pki: PkiPaths) -> None:
    cert_path, key_path = issue_client_certificate(pki, "gulou-amr-adapter")

    assert (cert_path, key_path) == pki.client("gulou-amr-adapter")
    assert cert_path.parent == pki.root / "pki" / "clients"
    cert = load_cert(cert_path)
    ca = load_cert(pki.ca_cert)
    cert.verify_directly_issued_by(ca)
    assert load_key(key_path).public_key() == cert.public_key()
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in common_names] == ["gulou-amr-adapter"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:certhub:principal:gulou-amr-adapter"
    ]

    verifier = PolicyBuilder().store(Store([ca])).time(now()).build_client_verifier()
    verified = verifier.verify(cert, [])
    assert verified.chain[-1] == ca

    assert principal_from_certificate(cert_path.read_bytes()) == "gulou-amr-adapter"
    der = cert.public_bytes(serialization.Encoding.DER)
    assert principal_from_certificate(der) == "gulou-amr-adapter"


def test_a_server_certificate_is_not_a_client_certificate(pki: PkiPaths) -> None:
    verifier = PolicyBuilder().store(Store([load_cert(pki.ca_cert)])).time(now())
    with pytest.raises(VerificationError):
        verifier.build_client_verifier().verify(load_cert(pki.server_cert), [])


def test_init_twice_keeps_the_ca_and_the_server_certificate(tmp_path: Path) -> None:
    pki = init_pki(tmp_path)
    before = {p: p.read_bytes() for p in (pki.ca_cert, pki.ca_key, pki.server_cert, pki.server_key)}
    client_before = issue_client_certificate(pki, "window-1")[0].read_bytes()

    again = init_pki(tmp_path)

    assert again == pki
    assert {p: p.read_bytes() for p in before} == before
    assert issue_client_certificate(pki, "window-1")[0].read_bytes() == client_before


def test_new_server_names_reissue_the_server_certificate_under_the_same_ca(
    tmp_path: Path,
) -> None:
    pki = init_pki(tmp_path)
    ca_before = pki.ca_cert.read_bytes()

    init_pki(tmp_path, server_names=("localhost", "hub.gulou.example.gov.cn", "10.0.0.7"))

    assert pki.ca_cert.read_bytes() == ca_before
    server = load_cert(pki.server_cert)
    server.verify_directly_issued_by(load_cert(pki.ca_cert))
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "hub.gulou.example.gov.cn"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]


def test_a_server_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "a")
    other = init_pki(tmp_path / "b")
    shutil.copy(other.server_cert, pki.server_cert)
    shutil.copy(other.server_key, pki.server_key)

    init_pki(tmp_path / "a")

    load_cert(pki.server_cert).verify_directly_issued_by(load_cert(pki.ca_cert))
    assert load_key(pki.server_key).public_key() == load_cert(pki.server_cert).public_key()


def test_a_half_present_ca_is_an_error_and_nothing_is_overwritten(tmp_path: Path) -> None:
    pki = init_pki(tmp_path)
    ca_cert = pki.ca_cert.read_bytes()
    pki.ca_key.unlink()

    with pytest.raises(PkiError, match=r"ca\.key is missing"):
        init_pki(tmp_path)
    assert pki.ca_cert.read_bytes() == ca_cert
    assert not pki.ca_key.exists()
    with pytest.raises(PkiError, match="CA is incomplete"):
        issue_client_certificate(pki, "window-1")


def test_a_ca_key_that_does_not_match_is_an_error(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "a")
    other = init_pki(tmp_path / "b")
    shutil.copy(other.ca_key, pki.ca_key)
    with pytest.raises(PkiError, match="is not the key of"):
        init_pki(tmp_path / "a")


def test_private_keys_are_0600_in_0700_directories(tmp_path: Path) -> None:
    pki = init_pki(tmp_path)
    _, client_key = issue_client_certificate(pki, "auditor")
    hub_secrets = init_hub_secrets(tmp_path)

    for key in (
        pki.ca_key,
        pki.server_key,
        client_key,
        hub_secrets.log_key_path,
        hub_secrets.audit_hmac_key_path,
    ):
        assert mode(key) == 0o600, key
    for directory in (pki.directory, pki.clients_directory, hub_secrets.log_key_path.parent):
        assert mode(directory) == 0o700, directory
    assert mode(pki.ca_cert) == 0o644
    # No temporary files are left behind.
    assert sorted(p.name for p in pki.directory.iterdir()) == [
        "ca.crt",
        "ca.key",
        "clients",
        "server.crt",
        "server.key",
    ]


@pytest.mark.parametrize("name", ["", "a/b", "../ca", ".hidden", "名字", "x" * 65, "a b"])
def test_invalid_principal_names_are_refused(pki: PkiPaths, name: str) -> None:
    with pytest.raises(ValueError, match="principal name"):
        issue_client_certificate(pki, name)
    assert not pki.clients_directory.exists() or not any(pki.clients_directory.iterdir())


def test_client_without_a_ca_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="run `certhub init` first"):
        issue_client_certificate(PkiPaths(tmp_path), "window-1")


def test_validity_is_bounded_and_leaves_never_outlive_the_ca(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="validity_days"):
        init_pki(tmp_path, validity_days=0)
    pki = init_pki(tmp_path, validity_days=CA_VALIDITY_DAYS)
    ca = load_cert(pki.ca_cert)
    assert load_cert(pki.server_cert).not_valid_after_utc <= ca.not_valid_after_utc
    short = load_cert(issue_client_certificate(pki, "short", validity_days=2)[0])
    assert short.not_valid_after_utc - short.not_valid_before_utc < datetime.timedelta(days=3)


@pytest.mark.parametrize("names", [(), ("bad name",), ("host/path",)])
def test_invalid_server_names_are_refused(tmp_path: Path, names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="server"):
        init_pki(tmp_path, server_names=names)


def _certificate_with_subject(subject: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now())
        .not_valid_after(now() + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_principal_from_certificate_explains_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"not a PEM or DER X\.509 certificate"):
        principal_from_certificate(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----")
    with pytest.raises(ValueError, match=r"not a PEM or DER X\.509 certificate"):
        principal_from_certificate(b"\x30\x03\x02\x01\x00")
    no_cn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certhub")])
    with pytest.raises(ValueError, match="exactly one CN"):
        principal_from_certificate(_certificate_with_subject(no_cn))
    bad_cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "../etc")])
    with pytest.raises(ValueError, match="is not a principal name"):
        principal_from_certificate(_certificate_with_subject(bad_cn))


# -- hub secrets -----------------------------------------------------------------------------


def test_hub_secrets_are_created_once_and_shared(tmp_path: Path) -> None:
    created = init_hub_secrets(tmp_path)
    log_key = created.load_log_key()
    hmac_key = created.load_audit_hmac_key()

    assert created.log_key_path == tmp_path / "keys" / "log-ed25519.pem"
    assert created.audit_hmac_key_path == tmp_path / "keys" / "audit-hmac.key"
    assert log_key.algorithm is Algorithm.ED25519
    assert len(hmac_key) == AUDIT_HMAC_KEY_BYTES
    assert created.log_key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")

    # A second init and another process reading the same data dir see the same secrets.
    again = init_hub_secrets(tmp_path)
    other_process = HubSecrets.for_data_dir(tmp_path)
    assert again == created == other_process
    assert other_process.load_log_key().public_key == log_key.public_key
    assert other_process.load_audit_hmac_key() == hmac_key


def test_hub_secrets_refuse_damaged_files(tmp_path: Path) -> None:
    hub_secrets = init_hub_secrets(tmp_path)
    hub_secrets.audit_hmac_key_path.write_text("abcd\n")
    with pytest.raises(PkiError, match="expected 32 bytes"):
        init_hub_secrets(tmp_path)
    hub_secrets.audit_hmac_key_path.write_text("zz" * 32)
    with pytest.raises(PkiError, match="hex digits"):
        hub_secrets.load_audit_hmac_key()
    # A P-256 key where the Ed25519 log key belongs.
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    hub_secrets.log_key_path.write_bytes(p256)
    with pytest.raises(PkiError, match="must be Ed25519"):
        hub_secrets.load_log_key()
    hub_secrets.log_key_path.unlink()
    with pytest.raises(PkiError, match="is missing"):
        hub_secrets.load_log_key()


def test_the_attestation_key_is_its_own_and_kept(tmp_path: Path) -> None:
    """Issue 14: presentation tokens and credentials are signed by a separate Ed25519 key,
    created once (also in a data directory initialised before it existed) and shared."""
    created = init_hub_secrets(tmp_path)
    key = created.load_attestation_key()
    assert created.attestation_key_path == tmp_path / "keys" / "attestation-ed25519.pem"
    assert key.algorithm is Algorithm.ED25519
    assert key.public_key != created.load_log_key().public_key
    assert created.attestation_key_path.stat().st_mode & 0o077 == 0
    assert init_hub_secrets(tmp_path).load_attestation_key().public_key == key.public_key
    created.attestation_key_path.unlink()  # a data dir from before issue 14
    assert init_hub_secrets(tmp_path).load_attestation_key().public_key != key.public_key
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    created.attestation_key_path.write_bytes(p256)
    with pytest.raises(PkiError, match="must be Ed25519"):
        created.load_attestation_key()
