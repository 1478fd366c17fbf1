"""RFC 6962 / RFC 9162 Merkle trees: hashing, proof verification and storage-friendly plans.

The hub stores the hash of every *perfect* subtree as a row ``(level, index, hash)``: the node
at ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)`` and level 0
holds the leaf hashes. A tree of any size is a short list of such nodes (its frontier), so
appending and proving only ever touch O(log n) rows:

- ``append_leaves`` turns the current frontier and new leaf hashes into the rows to insert;
- ``inclusion_plan`` / ``consistency_plan`` / ``root_plan`` name the rows to fetch, and
  ``ProofPlan.assemble`` turns them into the RFC 9162 proof (or root). Subtrees on the right
  edge that are not perfect are hashed from their perfect parts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certhub.signing.errors import ProofError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeId",
    "ProofPlan",
    "append_leaves",
    "consistency_plan",
    "frontier",
    "inclusion_plan",
    "leaf_hash",
    "node_hash",
    "root_from_frontier",
    "root_from_leaf_hashes",
    "root_plan",
    "verify_consistency",
    "verify_inclusion",
]

# SHA-256 output size; RFC 9162 section 2.1 fixes the hash for these logs.
HASH_SIZE = 32

# (level, index): the perfect subtree covering leaves [index * 2**level, (index+1) * 2**level).
NodeId = tuple[int, int]

EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_hash(value: bytes, *, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_size(value: int, *, what: str) -> None:
    if value < 0:
        raise ProofError(f"{what} must not be negative, got {value}")


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Root of adjacent perfect subtrees of strictly decreasing size, left to right."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


# ---------------------------------------------------------------------------------------------
# Reference computation and the append path


def frontier(tree_size: int) -> list[NodeId]:
    """The perfect subtrees that make up a tree of ``tree_size`` leaves, left to right."""
    _check_size(tree_size, what="tree size")
    nodes: list[NodeId] = []
    start = 0
    for level in range(tree_size.bit_length() - 1, -1, -1):
        if tree_size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def _push(
    stack: list[tuple[int, bytes]],
    position: int,
    hash_: bytes,
    completed: list[tuple[NodeId, bytes]] | None,
) -> None:
    """Add the leaf at ``position`` to a frontier stack of (level, hash), merging equals.

    The stack's levels strictly decrease, so only its tail can merge with the new leaf.
    """
    level = 0
    if completed is not None:
        completed.append(((0, position), hash_))
    while stack and stack[-1][0] == level:
        _, left = stack.pop()
        hash_ = node_hash(left, hash_)
        level += 1
        if completed is not None:
            completed.append(((level, position >> level), hash_))
    stack.append((level, hash_))


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Root of the tree with these leaf hashes: O(n) time, O(log n) memory, no recursion."""
    stack: list[tuple[int, bytes]] = []
    for position, h in enumerate(hashes):
        _check_hash(h, what=f"leaf hash {position}")
        _push(stack, position, h, None)
    return _fold_right([h for _, h in stack])


def root_from_frontier(tree_size: int, frontier_hashes: Sequence[bytes]) -> bytes:
    _check_frontier(tree_size, frontier_hashes)
    return _fold_right(frontier_hashes)


def _check_frontier(tree_size: int, frontier_hashes: Sequence[bytes]) -> list[NodeId]:
    nodes = frontier(tree_size)
    if len(frontier_hashes) != len(nodes):
        raise ProofError(
            f"a tree of size {tree_size} has {len(nodes)} frontier hashes, "
            f"got {len(frontier_hashes)}"
        )
    for node, h in zip(nodes, frontier_hashes, strict=True):
        _check_hash(h, what=f"frontier hash of node {node}")
    return nodes


def append_leaves(
    tree_size: int, frontier_hashes: Sequence[bytes], leaf_hashes: Sequence[bytes]
) -> tuple[list[tuple[NodeId, bytes]], list[bytes]]:
    """Append leaves to a tree known only by its frontier.

    Returns every perfect node completed by the append (the new leaves at level 0 included),
    in the order they were completed, and the frontier hashes of the new tree.
    """
    nodes = _check_frontier(tree_size, frontier_hashes)
    stack = [(level, h) for (level, _), h in zip(nodes, frontier_hashes, strict=True)]
    completed: list[tuple[NodeId, bytes]] = []
    for offset, h in enumerate(leaf_hashes):
        _check_hash(h, what=f"new leaf hash {offset}")
        _push(stack, tree_size + offset, h, completed)
    return completed, [h for _, h in stack]


# ---------------------------------------------------------------------------------------------
# Proof plans


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (``size`` >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _range_nodes(start: int, end: int) -> tuple[NodeId, ...]:
    """Perfect nodes composing MTH(D[start:end]), left to right, decreasing in size.

    Every range the RFC 9162 proof recursion produces starts at a multiple of the largest
    power of two not above its length, so the greedy decomposition is exact.
    """
    nodes: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        assert start % (1 << level) == 0, "range is not aligned to its perfect parts"
        nodes.append((level, start >> level))
        start += 1 << level
    return tuple(nodes)


@dataclass(frozen=True)
class ProofPlan:
    """The perfect nodes to fetch for one proof or root, and how to combine them."""

    nodes: tuple[NodeId, ...]
    # One entry per proof hash: the perfect nodes whose right fold gives that hash.
    _items: tuple[tuple[NodeId, ...], ...] = field(default=(), repr=False)
    # A root plan of the empty tree has no nodes but one output.
    _empty_root: bool = field(default=False, repr=False)

    def assemble(self, hashes: Mapping[NodeId, bytes]) -> list[bytes]:
        """Build the proof (or ``[root]`` for a root plan) from the fetched node hashes."""
        if self._empty_root:
            return [EMPTY_ROOT]
        result: list[bytes] = []
        for item in self._items:
            parts: list[bytes] = []
            for node in item:
                h = hashes.get(node)
                if h is None:
                    raise ProofError(f"hash of node (level {node[0]}, index {node[1]}) is missing")
                _check_hash(h, what=f"hash of node (level {node[0]}, index {node[1]})")
                parts.append(h)
            result.append(_fold_right(parts))
        return result


def _plan(ranges: Sequence[tuple[int, int]]) -> ProofPlan:
    items = tuple(_range_nodes(a, b) for a, b in ranges)
    unique = tuple(dict.fromkeys(node for item in items for node in item))
    return ProofPlan(nodes=unique, _items=items)


def inclusion_plan(leaf_index: int, tree_size: int) -> ProofPlan:
    """Plan for the RFC 9162 inclusion proof of ``leaf_index`` in a tree of ``tree_size``."""
    _check_size(leaf_index, what="leaf index")
    _check_size(tree_size, what="tree size")
    if leaf_index >= tree_size:
        raise ProofError(f"leaf index {leaf_index} is not below tree size {tree_size}")
    ranges: list[tuple[int, int]] = []
    low, high = 0, tree_size
    while high - low > 1:
        k = _split(high - low)
        if leaf_index < low + k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
    ranges.reverse()
    return _plan(ranges)


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """Plan for the RFC 9162 consistency proof between tree sizes ``size1`` and ``size2``."""
    _check_size(size1, what="size1")
    _check_size(size2, what="size2")
    if size1 == 0:
        raise ProofError("size1 is 0: every tree is consistent with the empty tree")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    ranges: list[tuple[int, int]] = []
    low, high = 0, size2
    whole_old_tree = True
    while size1 != high:
        k = _split(high - low)
        if size1 <= low + k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
            whole_old_tree = False
    if not whole_old_tree:
        ranges.append((low, high))
    ranges.reverse()
    return _plan(ranges)


def root_plan(tree_size: int) -> ProofPlan:
    """Plan whose ``assemble`` returns ``[root]`` of a tree of ``tree_size`` leaves."""
    _check_size(tree_size, what="tree size")
    if tree_size == 0:
        return ProofPlan(nodes=(), _empty_root=True)
    return _plan([(0, tree_size)])


# ---------------------------------------------------------------------------------------------
# Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2)


def _proof_hashes(proof: Sequence[bytes]) -> Iterator[bytes]:
    for position, h in enumerate(proof):
        _check_hash(h, what=f"proof hash {position}")
        yield h


def verify_inclusion(
    *, leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``leaf_hash`` at ``leaf_index`` in ``root``."""
    _check_size(leaf_index, what="leaf index")
    _check_size(tree_size, what="tree size")
    if leaf_index >= tree_size:
        raise ProofError(f"leaf index {leaf_index} is not below tree size {tree_size}")
    _check_hash(leaf_hash, what="leaf hash")
    hashes = list(_proof_hashes(proof))
    fn, sn = leaf_index, tree_size - 1
    result = leaf_hash
    for h in hashes:
        if sn == 0:
            raise ProofError(f"inclusion proof has {len(hashes)} hashes, more than needed")
        if fn & 1 or fn == sn:
            result = node_hash(h, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, h)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof has {len(hashes)} hashes, fewer than needed")
    if result != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    *, size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows tree ``size1`` is a prefix of ``size2``."""
    _check_size(size1, what="size1")
    _check_size(size2, what="size2")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == 0:
        raise ProofError("size1 is 0: a consistency proof from the empty tree proves nothing")
    hashes = list(_proof_hashes(proof))
    if size1 == size2:
        if hashes:
            raise ProofError("sizes are equal, so the proof must be empty")
        if root1 != root2:
            raise ProofError("sizes are equal but the roots differ")
        return
    _verify_consistency_path(size1=size1, size2=size2, root1=root1, root2=root2, hashes=hashes)


def _verify_consistency_path(
    *, size1: int, size2: int, root1: bytes, root2: bytes, hashes: list[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2 for 0 < size1 < size2, on length-checked hashes."""
    given = len(hashes)
    if not hashes:
        raise ProofError("consistency proof is empty")
    if size1 & (size1 - 1) == 0:
        # The old tree is a perfect subtree of the new one; its root is the first node.
        hashes.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = hashes[0]
    for h in hashes[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof has {given} hashes, more than needed")
        if fn & 1 or fn == sn:
            first = node_hash(h, first)
            second = node_hash(h, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, h)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof has {given} hashes, fewer than needed")
    if first != root1:
        raise ProofError("consistency proof does not lead to the old root")
    if second != root2:
        raise ProofError("consistency proof does not lead to the new root")
