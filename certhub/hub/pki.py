"""The development PKI (``certhub init``) and the hub's own audit-log secrets.

Every connection to the hub is mTLS. ``init_pki`` creates a certificate authority, the hub's
server certificate and, through ``issue_client_certificate``, one client certificate per
principal of the registry, whose subject CN is the principal's name. A production deployment
may bring certificates from its own CA instead; the hub only needs the same file layout.

Layout under the data directory::

    pki/ca.crt  pki/ca.key                    the CA (kept: never overwritten)
    pki/server.crt  pki/server.key            the hub's TLS server certificate
    pki/clients/<principal>.crt  .key         one per principal
    keys/log-ed25519.pem                      signs the audit log's checkpoints
    keys/audit-hmac.key                       keys the holder commitments of audit entries

All keys are ECDSA P-256 with SHA-256 signatures, except the Ed25519 log key (C2SP signed
notes are Ed25519). Private key files are written with mode 0600 in 0700 directories, and
every file is written to a temporary name and renamed, so a crash never leaves half a key.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certhub.hub.registry import principal_name_problem
from certhub.signing.errors import MalformedKey
from certhub.signing.keys import Algorithm, PrivateKey

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AUDIT_HMAC_KEY_BYTES",
    "CA_VALIDITY_DAYS",
    "DEFAULT_SERVER_NAMES",
    "DEFAULT_VALIDITY_DAYS",
    "PRINCIPAL_URI_PREFIX",
    "HubSecrets",
    "PkiError",
    "PkiPaths",
    "init_hub_secrets",
    "init_pki",
    "issue_client_certificate",
    "principal_from_certificate",
]

#: Names every server certificate covers: what a client on the hub's own machine dials
#: (the README, `certhub health`'s default address, container and systemd probes).
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
#: Server and client certificates: 825 days is the longest lifetime browsers ever accepted
#: for TLS server certificates (CA/Browser Forum, 2018-2020); long enough that a development
#: or pilot deployment does not expire mid-project, short enough to force a rotation.
DEFAULT_VALIDITY_DAYS = 825
#: The development CA outlives the certificates it issues; ten years, after which the whole
#: PKI is recreated with ``certhub init`` in a new data directory. Leaf certificates never
#: outlive it (their lifetime is cut to the CA's).
CA_VALIDITY_DAYS = 3650
#: Client certificates also carry the principal name as a URI SAN with this prefix.
PRINCIPAL_URI_PREFIX = "urn:certhub:principal:"
#: HMAC-SHA256 keys should be at least the hash output length (RFC 2104, section 3).
AUDIT_HMAC_KEY_BYTES = 32
#: Certificates start a few minutes in the past so that a machine whose clock is slightly
#: behind the one that ran ``certhub init`` still accepts them.
_CLOCK_SKEW = datetime.timedelta(minutes=5)
#: A leaf certificate within this margin of expiry is reissued by ``init_pki`` rather than
#: kept, so a restart does not end in a handshake failure a few days later.
_RENEW_MARGIN = datetime.timedelta(days=30)
#: X.509 bounds a CN at 64 characters (RFC 5280, ub-common-name).
_CN_MAX_LENGTH = 64
#: A DNS name is at most 253 characters (RFC 1035, 255 octets on the wire).
_DNS_NAME_MAX_LENGTH = 253

_PRIVATE_FILE_MODE = 0o600
_PUBLIC_FILE_MODE = 0o644
_PRIVATE_DIR_MODE = 0o700
_DNS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.*")


class PkiError(Exception):
    """The PKI or secrets files are missing, inconsistent or unreadable; the message says which."""


@dataclass(frozen=True)
class PkiPaths:
    """Where the PKI files of the data directory ``root`` live."""

    root: Path

    @property
    def directory(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def clients_directory(self) -> Path:
        return self.directory / "clients"

    def client(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of principal ``name``; ``ValueError`` if it is not a valid name."""
        _check_principal_name(name)
        return self.clients_directory / f"{name}.crt", self.clients_directory / f"{name}.key"


@dataclass(frozen=True)
class HubSecrets:
    """The hub's audit-log secrets.

    Every hub process, on every machine, must use the same two files (copy them with the
    data directory or mount them read-only): the log key signs checkpoints that monitors
    verify against one public key, and the HMAC key makes holder commitments that are the
    same for the same holder whichever process wrote the entry, so that an audit query by
    holder finds all of them. Losing the HMAC key makes past entries unsearchable by holder;
    leaking it lets whoever holds the log test guesses of who the holders are.
    """

    log_key_path: Path
    audit_hmac_key_path: Path
    # The hub's attestation key (issue 14): signs presentation tokens and the credentials
    # and status lists it exports. Separate from the log key, so that neither signature can
    # ever be taken for the other. Shared by every hub process like the two above.
    attestation_key_path: Path

    @classmethod
    def for_data_dir(cls, root: Path) -> HubSecrets:
        keys = root / "keys"
        return cls(
            log_key_path=keys / "log-ed25519.pem",
            audit_hmac_key_path=keys / "audit-hmac.key",
            attestation_key_path=keys / "attestation-ed25519.pem",
        )

    def load_attestation_key(self) -> PrivateKey:
        data = _read(self.attestation_key_path, "the hub's attestation key")
        try:
            key = PrivateKey.from_pem(data)
        except MalformedKey as exc:
            raise PkiError(f"{self.attestation_key_path}: {exc}") from exc
        if key.algorithm is not Algorithm.ED25519:
            raise PkiError(
                f"{self.attestation_key_path}: the attestation key must be Ed25519 (EdDSA), "
                f"got {key.algorithm}"
            )
        return key

    def load_log_key(self) -> PrivateKey:
        data = _read(self.log_key_path, "the audit log key")
        try:
            key = PrivateKey.from_pem(data)
        except MalformedKey as exc:
            raise PkiError(f"{self.log_key_path}: {exc}") from exc
        if key.algorithm is not Algorithm.ED25519:
            raise PkiError(
                f"{self.log_key_path}: the audit log key must be Ed25519 (C2SP signed notes), "
                f"got {key.algorithm}"
            )
        return key

    def load_audit_hmac_key(self) -> bytes:
        data = _read(self.audit_hmac_key_path, "the audit HMAC key")
        try:
            key = bytes.fromhex(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise PkiError(
                f"{self.audit_hmac_key_path}: expected {AUDIT_HMAC_KEY_BYTES * 2} hex digits"
            ) from exc
        if len(key) != AUDIT_HMAC_KEY_BYTES:
            raise PkiError(
                f"{self.audit_hmac_key_path}: expected {AUDIT_HMAC_KEY_BYTES} bytes "
                f"({AUDIT_HMAC_KEY_BYTES * 2} hex digits), got {len(key)}"
            )
        return key


def init_hub_secrets(root: Path) -> HubSecrets:
    """Create the audit-log secrets under data directory ``root`` if missing; keep existing ones.

    Existing files are loaded to check them, never replaced: replacing either would break
    verification of the log or holder queries over past entries.
    """
    hub_secrets = HubSecrets.for_data_dir(root)
    _make_private_dir(hub_secrets.log_key_path.parent)
    if not hub_secrets.log_key_path.exists():
        key = PrivateKey.generate(Algorithm.ED25519)
        _write(hub_secrets.log_key_path, key.to_pem(), mode=_PRIVATE_FILE_MODE, exclusive=True)
    if not hub_secrets.audit_hmac_key_path.exists():
        hmac_key = secrets.token_bytes(AUDIT_HMAC_KEY_BYTES).hex() + "\n"
        _write(
            hub_secrets.audit_hmac_key_path,
            hmac_key.encode("ascii"),
            mode=_PRIVATE_FILE_MODE,
            exclusive=True,
        )
    if not hub_secrets.attestation_key_path.exists():
        key = PrivateKey.generate(Algorithm.ED25519)
        _write(
            hub_secrets.attestation_key_path,
            key.to_pem(),
            mode=_PRIVATE_FILE_MODE,
            exclusive=True,
        )
    hub_secrets.load_log_key()
    hub_secrets.load_audit_hmac_key()
    hub_secrets.load_attestation_key()
    return hub_secrets


def init_pki(
    root: Path,
    *,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> PkiPaths:
    """Create the CA and the server certificate under data directory ``root``, if missing.

    Idempotent. An existing CA is kept, and a CA with only one of its two files is an error
    (nothing is overwritten). The server certificate is kept if it is signed by the CA,
    covers every name in ``server_names`` (DNS names, or IP addresses) and is not about to
    expire; otherwise a new key and certificate replace it, which is harmless because
    clients trust the CA, not the server certificate.
    """
    _check_validity(validity_days)
    names = _server_names(server_names)
    paths = PkiPaths(root)
    _make_private_dir(paths.directory)
    ca_cert, ca_key = _ensure_ca(paths)
    if not _server_is_current(paths, ca_cert, names):
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName(
            [
                x509.IPAddress(name) if isinstance(name, _IP_TYPES) else x509.DNSName(name)
                for name in names
            ]
        )
        cert = _leaf(
            ca_cert,
            ca_key,
            key,
            common_name=str(names[0])[:_CN_MAX_LENGTH],
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=san,
            validity_days=validity_days,
        )
        _write_pair(paths.server_cert, paths.server_key, cert, key)
    return paths


def issue_client_certificate(
    paths: PkiPaths, name: str, *, validity_days: int = DEFAULT_VALIDITY_DAYS
) -> tuple[Path, Path]:
    """The client certificate and key of principal ``name`` (its CN), issued if needed.

    An existing certificate is kept if the current CA signed it for ``name`` and it is not
    about to expire, so running this for every principal on each ``certhub init`` is safe;
    otherwise a new key and certificate are issued (the old ones could not connect anyway).
    Raises ``ValueError`` for an invalid name and ``PkiError`` if there is no CA.
    """
    _check_validity(validity_days)
    cert_path, key_path = paths.client(name)
    ca_cert, ca_key = _load_ca(paths)
    _make_private_dir(paths.clients_directory)
    existing = _load_current_leaf(cert_path, key_path, ca_cert)
    if existing is not None and _names(existing) == [name]:
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(
        ca_cert,
        ca_key,
        key,
        common_name=name,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        # The CN is what the hub reads; the SAN repeats it because RFC 5280 path validators
        # (cryptography's client verifier among them) require a SAN in every leaf.
        san=x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(f"{PRINCIPAL_URI_PREFIX}{name}")]
        ),
        validity_days=validity_days,
    )
    _write_pair(cert_path, key_path, cert, key)
    return cert_path, key_path


def principal_from_certificate(cert_pem_or_der: bytes) -> str:
    """The principal a client certificate names: its subject CN.

    Raises ``ValueError`` if the bytes are not a certificate, or its subject has no CN, more
    than one, or one that cannot be a principal name.
    """
    try:
        if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(cert_pem_or_der)
        else:
            cert = x509.load_der_x509_certificate(cert_pem_or_der)
    except ValueError as exc:
        raise ValueError("client certificate: not a PEM or DER X.509 certificate") from exc
    name = _common_name(cert)
    problem = principal_name_problem(name)
    if problem is not None:
        raise ValueError(
            f"client certificate: subject CN {name!r} is not a principal name: {problem}"
        )
    return name


# -- internals -----------------------------------------------------------------------------

_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_ServerName = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def _check_validity(validity_days: int) -> None:
    if isinstance(validity_days, bool) or not 1 <= validity_days <= CA_VALIDITY_DAYS:
        raise ValueError(f"validity_days must be 1-{CA_VALIDITY_DAYS}, got {validity_days}")


def _check_principal_name(name: str) -> None:
    problem = principal_name_problem(name)
    if problem is not None:
        raise ValueError(f"principal name: {problem}")


def _server_names(server_names: Sequence[str]) -> list[_ServerName]:
    if isinstance(server_names, str) or not server_names:
        raise ValueError("server_names must be a non-empty sequence of host names or addresses")
    names: list[_ServerName] = []
    for raw in server_names:
        try:
            names.append(ipaddress.ip_address(raw))
            continue
        except ValueError:
            pass
        if not raw or len(raw) > _DNS_NAME_MAX_LENGTH or not set(raw) <= _DNS_CHARS:
            raise ValueError(f"server name {raw!r} is neither an IP address nor a DNS name")
        names.append(raw.lower())
    return list(dict.fromkeys(names))


def _names(cert: x509.Certificate) -> list[str]:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return [
        v.value if isinstance(v.value, str) else v.value.decode("utf-8", "replace") for v in values
    ]


def _common_name(cert: x509.Certificate) -> str:
    names = _names(cert)
    if len(names) != 1:
        raise ValueError(
            f"client certificate: the subject must have exactly one CN (the principal name), "
            f"it has {len(names)}"
        )
    return names[0]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ensure_ca(paths: PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    have_cert, have_key = paths.ca_cert.exists(), paths.ca_key.exists()
    if have_cert or have_key:
        return _load_ca(paths)
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix keeps the subjects of two development CAs apart, so a client that
    # trusts one never tries to chain a certificate of the other to it.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certhub"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"certhub development CA {secrets.token_hex(4)}"
            ),
        ]
    )
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a crash in between leaves a key without a certificate, which the next
    # init reports instead of silently replacing.
    _write(paths.ca_key, _key_pem(key), mode=_PRIVATE_FILE_MODE, exclusive=True)
    _write(paths.ca_cert, _cert_pem(cert), mode=_PUBLIC_FILE_MODE, exclusive=True)
    return cert, key


def _load_ca(paths: PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    missing = [p for p in (paths.ca_cert, paths.ca_key) if not p.exists()]
    if len(missing) == len((paths.ca_cert, paths.ca_key)):
        raise PkiError(f"no CA in {paths.directory}: run `certhub init` first")
    if missing:
        raise PkiError(
            f"{missing[0]} is missing but its pair exists: the CA is incomplete; restore the "
            "file from a backup, or remove the pki directory and run `certhub init` again "
            "(every certificate will have to be reissued)"
        )
    try:
        cert = x509.load_pem_x509_certificate(_read(paths.ca_cert, "the CA certificate"))
        key = serialization.load_pem_private_key(_read(paths.ca_key, "the CA key"), None)
    except ValueError as exc:
        raise PkiError(f"{paths.directory}: the CA certificate or key is unreadable") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise PkiError(f"{paths.ca_key} is not the key of {paths.ca_cert}")
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
    validity_days: int,
) -> x509.Certificate:
    now = _now()
    not_after = min(now + datetime.timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certhub"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _load_current_leaf(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate
) -> x509.Certificate | None:
    """The certificate at ``cert_path`` if it and its key are usable as they are, else None."""
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - _RENEW_MARGIN < _now():
        return None
    return cert


def _server_is_current(
    paths: PkiPaths, ca_cert: x509.Certificate, names: list[_ServerName]
) -> bool:
    cert = _load_current_leaf(paths.server_cert, paths.server_key, ca_cert)
    if cert is None:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    covered: set[_ServerName] = set(san.get_values_for_type(x509.DNSName))
    covered.update(san.get_values_for_type(x509.IPAddress))  # type: ignore[arg-type]
    return all(name in covered for name in names)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_pair(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    _write(key_path, _key_pem(key), mode=_PRIVATE_FILE_MODE, exclusive=False)
    _write(cert_path, _cert_pem(cert), mode=_PUBLIC_FILE_MODE, exclusive=False)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=_PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise PkiError(f"{path}: {what} is missing; run `certhub init`") from exc
    except OSError as exc:
        raise PkiError(f"{path}: cannot read {what}: {exc.strerror}") from exc


def _write(path: Path, data: bytes, *, mode: int, exclusive: bool) -> None:
    """Write ``data`` to a temporary file with ``mode`` and move it into place.

    ``exclusive`` never replaces an existing file (a hard link fails if the name exists),
    which is what keeps a CA or a log key from being overwritten by a concurrent init.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; set exactly these
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(temporary, path)
            except FileExistsError as exc:
                raise PkiError(f"{path} already exists; it is never overwritten") from exc
        else:
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
