"""Reconciliation: the ledger proved against the chains.

Owns the reconciliation runs, their differences, the opening baselines of
operator-managed locations and the exception entries a mismatch opens
(migration 0012). `decide` is the pure comparison; `runner` reads the
ledger, the core's records and the chain and ties a run together, on a
schedule or on demand; `store` writes a run's result; `exceptions` lists and
resolves exception entries; `render` makes their messages.

Must never: post to the ledger or move funds to make a difference go away
(an operator re-baselines, with an audit record); call a difference
explained that `decide` did not explain.
"""
