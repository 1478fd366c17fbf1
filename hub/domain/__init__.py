"""The hub's pure domain rules: holder IDs, certificate identifiers, payloads and status.

Nothing here does I/O, talks gRPC or SQL; bad input is answered with the errors of
``hub.errors`` (mostly ``InvalidArgument`` with field violations naming the field).
Import from the submodules: ``hub.domain.holder``, ``hub.domain.identifier``,
``hub.domain.certificate`` and ``hub.domain.status``.
"""
