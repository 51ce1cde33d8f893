"""The core's telemetry: its log schema and request ids (logs.py), and RED metrics,
the access log and the /metrics endpoint for its gRPC server (rpc.py).

The signer (signer/telemetry/) and the EVM adapter (adapters/evm/telemetry/)
keep their own copies of the same few lines of configuration: the signer is
audited on its own and shares no code with the core. What the three must
agree on (log schema fields, RPC metric names and labels, access-log
fields) is a contract tested in tests/unit/test_telemetry_contract.py.
"""
