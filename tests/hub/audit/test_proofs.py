"""Property: every inclusion and consistency proof the service computes from the stored
tree verifies against an independently computed root, and a flipped bit makes it fail."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.engine import Engine
from support.audit_log import append_all, synthetic_records

from certhub.hub.audit import reads
from certhub.hub.audit.log import AuditLog, AuditLogKeys
from certhub.hub.store.engine import make_session_factory, session_scope
from certhub.signing import Algorithm, NoteSigner, PrivateKey, ProofError, merkle

# Largest log built: "a few thousand" leaves, in appends of random sizes so that checkpoints
# (and the frontier carried between appends) fall at arbitrary sizes.
LOG_SIZE = 3_000
EXAMPLES = 150


def _flip(value: bytes, bit: int) -> bytes:
    data = bytearray(value)
    data[bit // 8 % len(data)] ^= 1 << (bit % 8)
    return bytes(data)


@pytest.fixture
def built(engine: Engine) -> tuple[Engine, list[bytes]]:
    origin = "test.example/audit"
    keys = AuditLogKeys(
        origin=origin,
        signer=NoteSigner(origin, PrivateKey.generate(Algorithm.ED25519)),
        hmac_key=bytes(32),
    )
    sessions = make_session_factory(engine)
    audit_log = AuditLog(keys)
    rng = random.Random(9162)
    records = list(synthetic_records(LOG_SIZE))
    position = 0
    while position < LOG_SIZE:
        step = min(rng.choice([1, 2, 3, 7, 64, 255, 513, 1000]), LOG_SIZE - position)
        append_all(sessions, audit_log, records[position : position + step], batch=step)
        position += step
    return engine, [merkle.leaf_hash(r.leaf()) for r in records]


def test_every_served_proof_verifies_and_a_flipped_bit_fails(
    built: tuple[Engine, list[bytes]],
) -> None:
    engine, leaf_hashes = built
    sessions = make_session_factory(engine)
    roots: dict[int, bytes] = {}

    def root(size: int) -> bytes:
        if size not in roots:
            roots[size] = merkle.root_from_leaf_hashes(leaf_hashes[:size])
        return roots[size]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(
        size=st.integers(1, LOG_SIZE),
        other=st.integers(1, LOG_SIZE),
        pick=st.integers(0, LOG_SIZE - 1),
        bit=st.integers(0, 255),
    )
    def check(size: int, other: int, pick: int, bit: int) -> None:
        index = pick % size
        first, second = sorted((size, other))
        with session_scope(sessions) as session:
            inclusion = reads.inclusion_proof(session, index, size)
            consistency = reads.consistency_proof(session, first, second)
        assert merkle.leaf_hash(inclusion.leaf) == leaf_hashes[index]
        merkle.verify_inclusion(
            leaf_index=index,
            tree_size=size,
            leaf_hash=leaf_hashes[index],
            proof=inclusion.hashes,
            root=root(size),
        )
        merkle.verify_consistency(
            size1=first,
            size2=second,
            root1=root(first),
            root2=root(second),
            proof=consistency.hashes,
        )
        if inclusion.hashes:
            n = bit % len(inclusion.hashes)
            bad = [
                *inclusion.hashes[:n],
                _flip(inclusion.hashes[n], bit),
                *inclusion.hashes[n + 1 :],
            ]
            with pytest.raises(ProofError):
                merkle.verify_inclusion(
                    leaf_index=index,
                    tree_size=size,
                    leaf_hash=leaf_hashes[index],
                    proof=bad,
                    root=root(size),
                )
        with pytest.raises(ProofError):
            merkle.verify_inclusion(
                leaf_index=index,
                tree_size=size,
                leaf_hash=_flip(leaf_hashes[index], bit),
                proof=inclusion.hashes,
                root=root(size),
            )
        if consistency.hashes:
            n = bit % len(consistency.hashes)
            bad = [
                *consistency.hashes[:n],
                _flip(consistency.hashes[n], bit),
                *consistency.hashes[n + 1 :],
            ]
            with pytest.raises(ProofError):
                merkle.verify_consistency(
                    size1=first, size2=second, root1=root(first), root2=root(second), proof=bad
                )
        with pytest.raises(ProofError):
            merkle.verify_consistency(
                size1=first,
                size2=second,
                root1=_flip(root(first), bit),
                root2=root(second),
                proof=consistency.hashes,
            )

    check()
    # The stored checkpoint is the root of the whole log.
    with session_scope(sessions) as session:
        latest = reads.checkpoint(session)
    assert (latest.size, latest.root) == (LOG_SIZE, root(LOG_SIZE))


def test_proofs_read_one_query_of_log_n_nodes(built: tuple[Engine, list[bytes]]) -> None:
    engine, _ = built
    sessions = make_session_factory(engine)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(sessions) as session:
            statements.clear()
            proof = reads.inclusion_proof(session, 1234, LOG_SIZE)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    node_queries = [s for s in selects if "tree_nodes" in s]
    assert len(node_queries) == 1
    assert len(proof.hashes) <= LOG_SIZE.bit_length()
    assert len(selects) == 2  # latest size with the leaf, then the nodes
