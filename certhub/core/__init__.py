"""The shared core: rules the hub and the adapters both follow, written once (issue 16 item 1).

``certhub/adapters/`` may not import ``certhub/hub/`` (they could run elsewhere), so a rule both
sides need lives here: the check characters of USCCs, resident IDs and GB/T 36904 identifiers
(``certhub.core.codes``), the identifiers themselves (``certhub.core.identifier``) and the canonical
JSON of the signed payloads (``certhub.core.payload``): pure functions, no I/O, no gRPC, and bad
input is a ``ValueError`` (the hub turns it into its own errors with field violations).
``certhub.core.rpc`` talks to the hub over gRPC (the typed client). Nothing here imports the hub,
the adapters or SQL. Import from the submodules.
"""
