"""certhub: the certificate-sharing hub and its department adapters.

One installed name, so nothing collides with other distributions (issue 15 item 10): the
server (``certhub.hub``), what the hub and the adapters share (``certhub.core``), the pure
crypto (``certhub.signing``), the cache port (``certhub.cache``), the department side
(``certhub.adapters``) and the stubs generated from proto/ (``certhub.v1``). Each keeps the
layout of DESIGN.md one level down; docs/architecture.md draws the layers.
"""
