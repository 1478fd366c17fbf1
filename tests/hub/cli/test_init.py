"""`certhub init`: --server-name adds names to the loopback ones (issue 15, item 3)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from certhub.hub.cli.main import main
from certhub.hub.pki import PkiPaths, init_pki


def _covered(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(n) for n in san.get_values_for_type(x509.IPAddress)
    }


def test_server_name_is_added_to_the_loopback_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["init", "--data-dir", str(data), "--server-name", "hub1.gulou.gov.cn"]) == 0
    covered = _covered(PkiPaths(data).server_cert)
    # The documented local probe `certhub health --address 127.0.0.1:50051` needs these.
    assert covered == {
        "hub1.gulou.gov.cn",
        "localhost",
        "127.0.0.1",
        str(ipaddress.ip_address("::1")),
    }
    cert = x509.load_pem_x509_certificate(PkiPaths(data).server_cert.read_bytes())
    [cn] = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert cn.value == "hub1.gulou.gov.cn"


def test_a_certificate_without_the_loopback_names_is_reissued(tmp_path: Path) -> None:
    """A data dir initialised by an earlier release (only the given name) gets them on the
    next `certhub init`."""
    data = tmp_path / "data"
    init_pki(data, server_names=["hub1.gulou.gov.cn"])
    assert "127.0.0.1" not in _covered(PkiPaths(data).server_cert)
    assert main(["init", "--data-dir", str(data), "--server-name", "hub1.gulou.gov.cn"]) == 0
    assert {"127.0.0.1", "localhost", "hub1.gulou.gov.cn"} <= _covered(PkiPaths(data).server_cert)
