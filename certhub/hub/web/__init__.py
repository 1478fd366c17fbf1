"""The web console (operators and auditors, client certificates of the hub's CA) and the
public transparency page, served by ``certhub console`` with aiohttp and Jinja2.

``console`` builds what each page shows from the hub's services (no HTTP); ``server`` is
the HTTP edge: TLS, authentication, audit of every view, templates and static assets.
"""
