"""Following chains: each adapter's block stream applied to invoices and payments.

Owns the chain cursors, the in-memory index of watched deposit addresses
(index.py), deposit-address derivation from the xpub (hd.py) and each chain's
settings (config.py). Never signs and never holds a private key: addresses
come from the account xpub; only the signer process can sign.
"""
