"""The tamper-evident audit log in one place: entries and their redaction, the group
committer (the hub's one write path: sequencing, the Merkle tree, the signed checkpoint),
the log's reads and proofs, verification and the self-check, and refusals audited within
each principal's budget. It imports no service and no use case: they import it."""
