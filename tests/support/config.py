"""Configurations for the tests that parse one: the account xpub they derive
from and the smallest valid core configuration around one chain."""

from __future__ import annotations

import os

from core.webhooks.sealing import new_kek_line

# A BIP-32 account xpub (no private key anywhere): deposit addresses derive from it.
XPUB = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
KEK_ENV = "KASSA_TEST_WEBHOOK_KEK"

os.environ.setdefault(KEK_ENV, new_kek_line("test"))


def raw(**chain: object) -> dict[str, object]:
    """eip155:1 with ETH; `chain` adds to or overrides the [[chains]] entry."""
    return {
        # Plaintext links and a KEK from the environment: these tests are about chains.
        "server": {"dev_plaintext": True},
        "adapters": {"dev_plaintext": True},
        "secrets": {"webhook_kek_env": KEK_ENV},
        "database": {"dsn": "postgresql://x@127.0.0.1/kassa"},
        "hd": {"account_xpub": XPUB},
        "chains": [{"id": "eip155:1", "adapter": "127.0.0.1:1", "confirmations": 12, **chain}],
        "assets": [{"id": "eip155:1/slip44:60", "symbol": "ETH", "decimals": 18}],
    }
