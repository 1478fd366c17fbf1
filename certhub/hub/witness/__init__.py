"""Witnesses (c2sp.org/tlog-witness): the server another organisation runs to cosign the
hub's checkpoints, and the hub's side that submits checkpoints to witnesses."""
