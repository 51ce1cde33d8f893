"""The signer's metrics: outcomes of Sign by reason, and how long the HSM takes.

Only counts and latencies leave the signer this way. The labels are the
closed set of reasons in signer/api/reasons.py (plus SIGNED and REPLAYED)
and the HSM operation: never a key id, caller, destination, amount or
anything of the policy, which the attacker reading an open metrics port
must not learn.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DECISIONS = Counter(
    "kassa_signer_decisions",
    "Sign requests by outcome: SIGNED, REPLAYED or the refusal reason.",
    ["reason"],
)
HSM_SECONDS = Histogram(
    "kassa_signer_hsm_sign_seconds",
    "Time the HSM (or the HD derivation under its KEK) takes to sign one digest.",
    ["key_kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
AUDIT_APPEND_SECONDS = Histogram(
    "kassa_signer_audit_append_seconds",
    "Time from handing a state write with its audit record to the store until it is durable "
    "(committed and fsynced, batched with others) or has failed.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
