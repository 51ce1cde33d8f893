"""The core's shared vocabulary: assets (assets.py: CAIP-19 ids, the one
parser of an asset id), money in base units (money.py) and what a validated
request asks of the invoices area (invoice_specs.py).

Must never: do I/O, speak gRPC, or import any other core package.
"""
