"""The double-entry ledger: accounts and immutable transfers, TigerBeetle's model.

rules.py is the one pure decider (what a batch of transfers does to
balances); store.py its one writer; accounts.py names every account the core
opens; payments.py and settlement.py post what invoices do; queries.py
serves LedgerService's reads; check.py verifies a live database. Never
updates or deletes a transfer (a correction is a new transfer), never lets
debits and credits of an asset differ, never posts floats.
"""
