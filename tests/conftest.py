"""Shared test settings: small, reproducible runs; fitted models shared across tests."""

import os

# Two host devices would split our vectorised chains; keep JAX on one CPU device and quiet.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
