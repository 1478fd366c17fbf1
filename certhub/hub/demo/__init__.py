"""The demo district: a realistic registry, department keys and certificates, and `certhub demo`."""
