"""Domain services: plain functions over a registry snapshot and a database session.

Nothing here knows gRPC. Checks that need no database (parsing, authorisation, a push's
signature) are separate from the functions that take a session: ``Hub`` runs them on the
serving loop before it queues anything, and only the session part runs inside the audit
group commit. A revocation's signature is the exception: the key to check it with is the
stored certificate's issuer's, so ``ingest.store_revoke`` checks it inside the commit.
"""
