"""The signer's telemetry: its log schema and request ids (logs.py), and RED metrics,
the access log and the /metrics endpoint for its gRPC server (rpc.py).

The signer is audited on its own and shares no code with the core or the adapters: these few lines of configuration of python-json-logger and
prometheus-client are its own copy of the core's (core/telemetry/). What the
three processes must agree on (log schema fields, RPC metric names and
labels, access-log fields) is a contract tested in
tests/unit/test_telemetry_contract.py.
"""
