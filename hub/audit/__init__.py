"""The tamper-evident audit log: entries, holder commitments, the Merkle tree and group commit."""
