"""Helpers shared by tests: no test module imports another; they import these.

grpc_errors  google.rpc.Status details of a failed call (reason, domain, field violations)
invoices     creating invoices and reading payments in end-to-end tests
events       an EventTap that streams a merchant's events in the background
payouts      payout scopes, paid invoices, the hot key's nonce, `kassactl ledger check`
ledger       `kassactl ledger check` on a database
signer       the signer's harness: certificates, config, a running signer, signed envelopes
evm          an EVM adapter process and a reader of its block stream
wire_fuzz    the wire fuzzer: adversarial requests for any RPC, raw sends, its oracle
ssrf         internal address forms a webhook target must never reach
log_lines    the log schema writing to a string; a DirectLine line against the logging one

Fixtures stay in the conftest.py files next to the tests that use them.
"""
