"""The hub's pure domain rules: holder IDs, certificate identifiers, payloads and status.

Nothing here does I/O, talks gRPC or SQL; bad input is answered with the errors of
``certhub.hub.errors`` (mostly ``InvalidArgument`` with field violations naming the field).
Import from the submodules: ``certhub.hub.domain.holder``, ``certhub.hub.domain.identifier``,
``certhub.hub.domain.certificate`` and ``certhub.hub.domain.status``.
"""
