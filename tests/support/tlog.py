"""An in-memory transparency log for witness tests: leaves, roots, consistency proofs and
signed checkpoints, computed with ``certhub.signing.merkle`` from the leaves themselves."""

from __future__ import annotations

from certhub.signing import NoteSigner, merkle
from certhub.signing.note import Checkpoint


class MemoryLog:
    def __init__(self, signer: NoteSigner, leaves: list[bytes] | None = None) -> None:
        self.signer = signer
        self.hashes = [merkle.leaf_hash(x) for x in leaves or []]

    @property
    def origin(self) -> str:
        return self.signer.name

    def append(self, *leaves: bytes) -> None:
        self.hashes.extend(merkle.leaf_hash(x) for x in leaves)

    def grow(self, count: int, *, tag: str = "entry") -> None:
        start = len(self.hashes)
        self.append(*(f"{tag}-{n}".encode() for n in range(start, start + count)))

    def root(self, size: int | None = None) -> bytes:
        size = len(self.hashes) if size is None else size
        return merkle.root_from_leaf_hashes(self.hashes[:size])

    def note(self, size: int | None = None) -> str:
        size = len(self.hashes) if size is None else size
        checkpoint = Checkpoint(origin=self.origin, size=size, root_hash=self.root(size))
        return self.signer.sign(checkpoint.to_text())

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.hashes) if new is None else new
        if old in (0, new):
            return []
        plan = merkle.consistency_plan(old, new)
        nodes = {
            (level, index): merkle.root_from_leaf_hashes(
                self.hashes[index << level : (index + 1) << level]
            )
            for level, index in plan.nodes
        }
        return plan.assemble(nodes)

    def copy(self) -> MemoryLog:
        other = MemoryLog(self.signer)
        other.hashes = list(self.hashes)
        return other
