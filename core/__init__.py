"""The shared core: rules the hub and the adapters both follow, written once (issue 16 item 1).

``adapters/`` may not import ``hub/`` (they could run elsewhere), so a rule both sides need
lives here: the check characters of USCCs, resident IDs and GB/T 36904 identifiers
(``core.codes``), the identifiers themselves (``core.identifier``) and the canonical JSON of
the signed payloads (``core.payload``). Pure functions, no I/O; nothing here imports the hub,
the adapters, gRPC or SQL, and bad input is a ``ValueError`` (the hub turns it into its own
errors with field violations). Import from the submodules.
"""
