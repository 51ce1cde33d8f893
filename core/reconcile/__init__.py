"""Reconciliation: the ledger proved against the chains.

Owns the reconciliation runs, their differences, the opening baselines of
operator-managed locations and the exception entries a mismatch opens
(migration 0012). `decide` is the pure comparison; `gather` reads the
ledger, the core's records and the chain; `store` writes a run's result;
`runner` ties them together on a schedule or on demand.
"""
