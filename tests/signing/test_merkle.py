from __future__ import annotations

import base64
import itertools
import json
import math
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certhub.signing.errors import ProofError
from certhub.signing.merkle import (
    EMPTY_ROOT,
    NodeId,
    append_leaves,
    consistency_plan,
    frontier,
    inclusion_plan,
    leaf_hash,
    node_hash,
    root_from_frontier,
    root_from_leaf_hashes,
    root_plan,
    verify_consistency,
    verify_inclusion,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

# The RFC 6962/9162 proof vectors of github.com/transparency-dev/merkle (its testdata/
# folder): not copied into the project (README, "Running the Merkle vector tests"). The
# environment variable names a checkout's testdata/; the default is the shared folder the
# development machines have beside the repository.
VECTORS_ENV = "CERTHUB_MERKLE_VECTORS"
VECTORS = Path(
    os.environ.get(VECTORS_ENV)
    or Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"
)
_MISSING = (
    f"Merkle vectors not found at {{}}: set {VECTORS_ENV} to transparency-dev/merkle's testdata/"
)

REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
# Roots of the prefixes of the RFC 6962 reference tree (sizes 1..8), as published with it.
REFERENCE_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# --- an independent reference: RFC 6962 section 2.1 definitions, written recursively --------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _leaves(n: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(b"entry %d/%d" % (seed, i)) for i in range(n)]


def _all_nodes(hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
    completed, _ = append_leaves(0, [], hashes)
    return dict(completed)


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    data = bytearray(value)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


# --- conformance vectors -----------------------------------------------------------------------


def _vector_files(kind: str) -> list[Any]:
    folder = VECTORS / kind
    if not folder.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(_MISSING.format(folder)))]
    files = sorted(folder.rglob("*.json"))
    return [pytest.param(f, id=str(f.relative_to(folder))) for f in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


@pytest.mark.parametrize("path", _vector_files("inclusion"))
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())

    def check() -> None:
        verify_inclusion(
            leaf_index=case["leafIdx"],
            tree_size=case["treeSize"],
            leaf_hash=_b64(case["leafHash"]),
            proof=[_b64(p) for p in case["proof"] or []],
            root=_b64(case["root"]),
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("path", _vector_files("consistency"))
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())

    def check() -> None:
        verify_consistency(
            size1=case["size1"],
            size2=case["size2"],
            root1=_b64(case["root1"]),
            root2=_b64(case["root2"]),
            proof=[_b64(p) for p in case["proof"] or []],
        )

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def test_vectors_include_passing_cases() -> None:
    folder = VECTORS
    if not folder.is_dir():
        pytest.skip(_MISSING.format(folder))
    passing = [
        p
        for kind in ("inclusion", "consistency")
        for p in (folder / kind).rglob("*.json")
        if not json.loads(p.read_text())["wantErr"]
    ]
    # Guards against a vector loader that silently turns every case into an expected error.
    assert len(passing) >= 10


# --- reference tree ----------------------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == REFERENCE_ROOTS[0]
    assert node_hash(b"a", b"b") != node_hash(b"b", b"a")


@pytest.mark.parametrize("size", range(9))
def test_reference_tree_roots(size: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in REFERENCE_LEAVES[:size]]
    expected = EMPTY_ROOT.hex() if size == 0 else REFERENCE_ROOTS[size - 1]
    assert root_from_leaf_hashes(hashes).hex() == expected
    assert _mth(hashes).hex() == expected
    _, front = append_leaves(0, [], hashes)
    assert root_from_frontier(size, front).hex() == expected
    assert root_plan(size).assemble(_all_nodes(hashes))[0].hex() == expected


def test_reference_tree_proofs_verify() -> None:
    hashes = [leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    nodes = _all_nodes(hashes)
    for size in range(1, 9):
        root = bytes.fromhex(REFERENCE_ROOTS[size - 1])
        for index in range(size):
            proof = inclusion_plan(index, size).assemble(nodes)
            verify_inclusion(
                leaf_index=index, tree_size=size, leaf_hash=hashes[index], proof=proof, root=root
            )
        for size1 in range(1, size + 1):
            proof = consistency_plan(size1, size).assemble(nodes)
            verify_consistency(
                size1=size1,
                size2=size,
                root1=bytes.fromhex(REFERENCE_ROOTS[size1 - 1]),
                root2=root,
                proof=proof,
            )


# --- plans against the independent reference ------------------------------------------------


def test_plans_match_the_rfc_definitions_exhaustively_for_small_trees() -> None:
    hashes = _leaves(40)
    nodes = _all_nodes(hashes)
    for size in range(1, 41):
        prefix = hashes[:size]
        assert root_plan(size).assemble(nodes) == [_mth(prefix)]
        for index in range(size):
            assert inclusion_plan(index, size).assemble(nodes) == _path(index, prefix)
        for size1 in range(1, size + 1):
            assert consistency_plan(size1, size).assemble(nodes) == _subproof(size1, prefix, True)


def test_frontier() -> None:
    assert frontier(0) == []
    assert frontier(1) == [(0, 0)]
    assert frontier(8) == [(3, 0)]
    assert frontier(13) == [(3, 0), (2, 2), (0, 12)]
    for size in range(200):
        covered = 0
        for level, index in frontier(size):
            assert index << level == covered  # adjacent, left to right
            covered += 1 << level
        assert covered == size


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 2**40 + 12345, 10**15, 2**63 - 1])
def test_plans_are_logarithmic(size: int) -> None:
    bound = 2 * max(1, math.ceil(math.log2(size))) + 2
    assert len(frontier(size)) <= bound
    assert len(root_plan(size).nodes) <= bound
    for index in {0, size // 2, size - 1}:
        assert len(inclusion_plan(index, size).nodes) <= bound
    for size1 in {1, size // 3 or 1, size - 1 or 1, size}:
        plan = consistency_plan(size1, size)
        assert len(plan.nodes) <= bound
        assert len(set(plan.nodes)) == len(plan.nodes)
    for level, index in inclusion_plan(size - 1, size).nodes:
        assert (index + 1) << level <= size  # only perfect, existing subtrees


@pytest.mark.slow
def test_large_tree_root_without_recursion() -> None:
    hashes = _leaves(2**17 + 3)
    completed, front = append_leaves(0, [], hashes)
    assert root_from_leaf_hashes(hashes) == root_from_frontier(len(hashes), front)
    assert len(completed) == 2 * len(hashes) - bin(len(hashes)).count("1")


# --- property tests ----------------------------------------------------------------------------


@st.composite
def tree_and_queries(draw: st.DrawFn) -> tuple[int, int, int]:
    size = draw(st.integers(min_value=1, max_value=2000))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    size1 = draw(st.integers(min_value=1, max_value=size))
    return size, index, size1


_TREE = _leaves(2000, seed=7)
_NODES = _all_nodes(_TREE)
_PREFIX_ROOTS: dict[int, bytes] = {}


def _root(size: int) -> bytes:
    if size not in _PREFIX_ROOTS:
        _PREFIX_ROOTS[size] = root_from_leaf_hashes(_TREE[:size])
    return _PREFIX_ROOTS[size]


@settings(max_examples=300, deadline=None)
@given(tree_and_queries(), st.integers(min_value=0))
def test_inclusion_proofs_verify_and_any_flipped_bit_fails(
    query: tuple[int, int, int], bit: int
) -> None:
    size, index, _ = query
    root = _root(size)
    assert root_plan(size).assemble(_NODES) == [root]
    proof = inclusion_plan(index, size).assemble(_NODES)
    verify_inclusion(
        leaf_index=index, tree_size=size, leaf_hash=_TREE[index], proof=proof, root=root
    )
    if proof:
        position = bit % len(proof)
        bad = [*proof]
        bad[position] = _flip(bad[position], bit // len(proof))
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf_index=index, tree_size=size, leaf_hash=_TREE[index], proof=bad, root=root
            )
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf_index=index,
            tree_size=size,
            leaf_hash=_flip(_TREE[index], bit),
            proof=proof,
            root=root,
        )
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf_index=index,
            tree_size=size,
            leaf_hash=_TREE[index],
            proof=proof,
            root=_flip(root, bit),
        )
    if size > 1:
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf_index=(index + 1) % size,
                tree_size=size,
                leaf_hash=_TREE[index],
                proof=proof,
                root=root,
            )


@settings(max_examples=300, deadline=None)
@given(tree_and_queries(), st.integers(min_value=0))
def test_consistency_proofs_verify_and_any_flipped_bit_fails(
    query: tuple[int, int, int], bit: int
) -> None:
    size2, _, size1 = query
    root1, root2 = _root(size1), _root(size2)
    proof = consistency_plan(size1, size2).assemble(_NODES)
    verify_consistency(size1=size1, size2=size2, root1=root1, root2=root2, proof=proof)
    if proof:
        position = bit % len(proof)
        bad = [*proof]
        bad[position] = _flip(bad[position], bit // len(proof))
        with pytest.raises(ProofError):
            verify_consistency(size1=size1, size2=size2, root1=root1, root2=root2, proof=bad)
    with pytest.raises(ProofError):
        verify_consistency(
            size1=size1, size2=size2, root1=_flip(root1, bit), root2=root2, proof=proof
        )
    with pytest.raises(ProofError):
        verify_consistency(
            size1=size1, size2=size2, root1=root1, root2=_flip(root2, bit), proof=proof
        )


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=600),
    st.lists(st.integers(min_value=0, max_value=600), max_size=8),
)
def test_append_in_batches_equals_one_shot(total: int, cuts: list[int]) -> None:
    hashes = _TREE[:total]
    expected_nodes, expected_frontier = append_leaves(0, [], hashes)
    boundaries = sorted({0, total, *(c for c in cuts if c <= total)})
    nodes: dict[NodeId, bytes] = {}
    front: list[bytes] = []
    for start, end in itertools.pairwise(boundaries):
        completed, front = append_leaves(start, front, hashes[start:end])
        for node, h in completed:
            assert node not in nodes, f"node {node} completed twice"
            nodes[node] = h
        # The frontier is always exactly the perfect nodes of frontier(end).
        assert front == [nodes[n] for n in frontier(end)]
        assert root_from_frontier(end, front) == _mth(hashes[:end])
    assert nodes == dict(expected_nodes)
    assert front == expected_frontier
    # Every perfect subtree of the tree is there, with its RFC 6962 hash.
    for (level, index), h in nodes.items():
        assert h == _mth(hashes[index << level : (index + 1) << level])
    assert len(nodes) == 2 * total - bin(total).count("1")


# --- argument errors ---------------------------------------------------------------------------


H = leaf_hash(b"x")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: inclusion_plan(5, 5), "leaf index 5 is not below tree size 5"),
        (lambda: inclusion_plan(0, 0), "not below tree size 0"),
        (lambda: inclusion_plan(-1, 5), "leaf index must not be negative"),
        (lambda: consistency_plan(0, 5), "size1 is 0"),
        (lambda: consistency_plan(6, 5), "size1 6 is greater than size2 5"),
        (lambda: root_plan(-1), "tree size must not be negative"),
        (lambda: frontier(-3), "tree size must not be negative"),
        (lambda: append_leaves(3, [H], []), "has 2 frontier hashes, got 1"),
        (lambda: append_leaves(1, [b"short"], []), "is 5 bytes, expected 32"),
        (lambda: append_leaves(0, [], [b""]), "new leaf hash 0 is 0 bytes"),
        (lambda: root_from_leaf_hashes([H, b"x"]), "leaf hash 1 is 1 bytes"),
        (lambda: root_from_frontier(2, []), "has 1 frontier hashes, got 0"),
        (lambda: inclusion_plan(0, 2).assemble({}), "node (level 0, index 1) is missing"),
        (lambda: root_plan(2).assemble({(1, 0): b"short"}), "is 5 bytes, expected 32"),
        (
            lambda: verify_inclusion(leaf_index=0, tree_size=1, leaf_hash=b"x", proof=[], root=H),
            "leaf hash is 1 bytes",
        ),
        (
            lambda: verify_inclusion(leaf_index=0, tree_size=2, leaf_hash=H, proof=[b"x"], root=H),
            "proof hash 0 is 1 bytes",
        ),
        (
            lambda: verify_inclusion(leaf_index=0, tree_size=1, leaf_hash=H, proof=[H], root=H),
            "more than needed",
        ),
        (
            lambda: verify_inclusion(leaf_index=0, tree_size=2, leaf_hash=H, proof=[], root=H),
            "fewer than needed",
        ),
        (
            lambda: verify_consistency(size1=1, size2=1, root1=H, root2=H, proof=[H]),
            "proof must be empty",
        ),
        (
            lambda: verify_consistency(size1=1, size2=2, root1=H, root2=H, proof=[]),
            "consistency proof is empty",
        ),
        (
            lambda: verify_consistency(size1=1, size2=2, root1=H, root2=H, proof=[H, H]),
            "more than needed",
        ),
    ],
)
def test_argument_errors(call: Any, message: str) -> None:
    with pytest.raises(ProofError) as info:
        call()
    assert message in str(info.value)


def test_root_plan_of_empty_tree() -> None:
    plan = root_plan(0)
    assert plan.nodes == ()
    assert plan.assemble({}) == [EMPTY_ROOT]


def test_consistency_plan_for_equal_sizes_is_empty() -> None:
    plan = consistency_plan(7, 7)
    assert plan.nodes == ()
    assert plan.assemble({}) == []


def test_random_batches_with_a_fixed_seed_cover_large_trees() -> None:
    rng = random.Random(1)
    hashes = _leaves(5000, seed=3)
    nodes: dict[NodeId, bytes] = {}
    front: list[bytes] = []
    size = 0
    while size < len(hashes):
        step = rng.randint(1, 300)
        completed, front = append_leaves(size, front, hashes[size : size + step])
        nodes.update(completed)
        size = min(len(hashes), size + step)
    assert root_plan(size).assemble(nodes) == [root_from_leaf_hashes(hashes)]
