"""The core's shared vocabulary: assets (CAIP-19), money in base units, the
invoice state machine and what a request asks of the invoices area.

Pure: no I/O, no gRPC, no imports from any other core package.
"""
