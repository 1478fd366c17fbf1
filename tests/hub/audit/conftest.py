"""A group committer over the test database, for the tests that drive it without a Hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from certhub.hub.audit.committer import GroupCommitter
from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.store.engine import make_session_factory
from certhub.signing import Algorithm, NoteSigner, PrivateKey


@pytest.fixture
def committer(engine: Engine) -> Iterator[GroupCommitter]:
    origin = "test.example/audit"
    keys = AuditLogKeys(
        origin=origin,
        signer=NoteSigner(origin, PrivateKey.generate(Algorithm.ED25519)),
        hmac_key=bytes(32),
    )
    running = GroupCommitter(sessions=make_session_factory(engine), audit_log=AuditLog(keys))
    yield running
    running.close()
