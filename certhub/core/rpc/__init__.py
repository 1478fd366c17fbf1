"""Talking to the hub over gRPC, written once for the hub's own tools and the adapters
(issue 16 item 1): the channel (``certhub.core.rpc.channel``: mTLS from files, the message limit,
the expected server name), the hub's error answers as one typed hierarchy
(``certhub.core.rpc.errors``) and the typed client built on both (``certhub.core.rpc.client``).

The only part of ``core`` that imports gRPC, the generated stubs and ``signing``; like the
rest of ``core`` it imports neither the hub nor the adapters (pyproject ``core-rules`` and
``core-layers``). Import from the submodules.
"""
