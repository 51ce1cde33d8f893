"""Merchants: who may use the core and with which API keys.

Owns the merchants and api_keys tables (store.py) and the credential
vocabulary — scopes and the bearer token's shape (credentials.py). Never
imports core/api: authentication at the edge calls down into this package.
"""

from core.merchants.store import Merchants

__all__ = ["Merchants"]
