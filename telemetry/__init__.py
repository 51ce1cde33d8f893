"""What the three processes share for operating them: metrics and their endpoint.

Owns the RPC metrics (one interceptor, same names in core, signer and
adapters) and the Prometheus exposition endpoint. Imports nothing of core/,
signer/ or adapters/ and no HTTP client (tests/unit/test_boundaries.py): the
signer imports it, and its endpoint serves only what the signer put in its
registry: counts and latencies, never keys, policy rules or request bodies.
"""
