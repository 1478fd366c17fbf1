"""The gRPC edge: thin servicers, the one error mapping, authentication, the server."""
