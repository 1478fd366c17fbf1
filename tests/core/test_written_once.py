"""Issue 16 item 1: a rule the hub and the adapters both follow is written once, in
``certhub/core/``. The adapters may not import the hub, so they used to keep their own copies of the
GB/T 36904 identifier rules, the canonical payload JSON and the payload's vocabularies (ID
types, certificate kinds), and of the gRPC channel setup and the reading of the hub's error
answers (``certhub.core.rpc``); this fails if one comes back."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

import pytest

from certhub.adapters import mapping
from certhub.core import codes, identifier, payload
from certhub.core.rpc import channel, errors
from certhub.hub.domain.certificate import (
    RevocationPayload,
    parse_revocation_payload,
    revocation_payload_json,
)

REPO = Path(__file__).resolve().parents[2]
# Everything that follows the shared rules: the hub, the adapters and their foundations.
PACKAGES = ("hub", "adapters", "signing", "cache", "core")
# Every public name of core's rule modules (codes.py has no __all__: its public names).
SHARED = (
    {
        name
        for name, value in vars(codes).items()
        if not name.startswith("_")
        and getattr(value, "__module__", codes.__name__) == codes.__name__
        and (name.isupper() or callable(value))
    }
    | set(identifier.__all__)
    | set(payload.__all__)
    | set(channel.__all__)
    | set(errors.__all__)
)
# Who may open a channel to the hub or read the rich details of a failed call: certhub.core.rpc only
# (the hub's server writes details with rpc_status.to_status; nobody else reads them).
RPC_CALLS = {
    ("grpc", "secure_channel"),
    ("grpc", "insecure_channel"),
    ("grpc", "ssl_channel_credentials"),
    ("rpc_status", "from_call"),
}
# The hub's own lineage_of parses (and refuses a malformed GB/T id) before it takes the
# lineage with core's rule; the hub's revocation_payload_json takes a RevocationPayload.
HUB_WRAPPERS = {
    ("certhub/hub/domain/identifier.py", "lineage_of"),
    ("certhub/hub/domain/certificate.py", "revocation_payload_json"),
}


def _definitions() -> dict[str, list[str]]:
    """Top-level name -> the files that define it (a function, a class or a constant)."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / "certhub" / package).rglob("*.py")):
            relative = str(path.relative_to(REPO))
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                names: list[str] = []
                if isinstance(node, ast.FunctionDef | ast.ClassDef):
                    names = [node.name]
                elif isinstance(node, ast.Assign):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    names = [node.target.id]
                for name in names:
                    if (relative, name) not in HUB_WRAPPERS:
                        found.setdefault(name, []).append(relative)
    return found


def test_the_shared_rules_are_defined_only_in_core() -> None:
    definitions = _definitions()
    assert "GBT_PREFIX" in SHARED
    assert {"canonical_json", "IdType", "CertificateKind"} <= SHARED
    assert {"ClientTLS", "secure_channel", "MAX_MESSAGE_BYTES", "error_from_rpc"} <= SHARED
    twice = {
        name: files
        for name in sorted(SHARED)
        if (files := definitions.get(name, []))
        and any(not f.startswith("certhub/core/") for f in files)
    }
    assert twice == {}


@pytest.mark.parametrize(
    "revoked_at",
    [
        datetime.datetime(2024, 5, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=8))),
        datetime.datetime(2024, 5, 1, 1, 30, 0, 120000, tzinfo=datetime.UTC),
    ],
)
def test_a_revocation_is_encoded_alike_by_both_sides(revoked_at: datetime.datetime) -> None:
    """What an adapter signs (``certhub.core.payload``) is what the hub writes for the same
    revocation, and reads back unchanged."""
    signed = payload.revocation_payload_json(
        certificate_id="FZ-1", reason="吊销", revoked_at=revoked_at
    )
    hubs = revocation_payload_json(
        RevocationPayload(certificate_id="FZ-1", reason="吊销", revoked_at=revoked_at)
    )
    assert signed == hubs
    assert revocation_payload_json(parse_revocation_payload(signed)) == signed


def test_the_adapters_guess_only_media_types_the_hub_accepts() -> None:
    """An attachment's type guessed from its file name is one the hub accepts, and every
    type the hub accepts can be guessed."""
    assert set(mapping._MEDIA_TYPES.values()) == payload.ATTACHMENT_MEDIA_TYPES


def test_only_core_rpc_opens_channels_and_reads_error_details() -> None:
    """Under another name, a copy of the channel setup or of the error reading would pass
    the test above; it still has to call gRPC's own functions."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / "certhub" / package).rglob("*.py")):
            relative = str(path.relative_to(REPO))
            if relative.startswith("certhub/core/rpc/"):
                continue
            found.extend(
                f"{relative}:{node.lineno} {node.value.id}.{node.attr}"
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in RPC_CALLS
            )
    assert found == []
