"""The core's link to the signer, checked before `serve` opens its port and watched after.

`decide` says why a call to the signer failed (pure: status code, text, reason in;
a cause out); `probe` makes the call (GetPublicKey of the hot key, answered only
to allowlisted callers, then the signer's own health), waits for the signer at
start, and watches it while the core runs. It never signs and never stops the
core once it serves: a signer that goes away later is health `kassa.signer`
NOT_SERVING and `kassa_core_signer_up` 0, while invoices go on.
"""
