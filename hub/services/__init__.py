"""Domain services: plain functions over a registry snapshot and a database session.

Nothing here knows gRPC. Checks that need no database (parsing, signatures, authorisation)
are separate from the functions that take a session, so they run in parallel on request
threads while the session part runs inside the audit group commit.
"""
