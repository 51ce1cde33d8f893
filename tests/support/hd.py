"""An independent reference for deposit-address derivation: BIP-32 CKDpub
with coincurve and keccak, base58check by hand — what core/chain/hd.py did
before bip-utils, kept to check bip-utils against (tests/unit/test_hd.py) and
to measure it by (tests/bench/bench_hd.py)."""

from __future__ import annotations

import hashlib
import hmac

from coincurve import PublicKey
from Crypto.Hash import keccak

# BIP-32 test vector 1, chain m/0H/1/2H (depth 3: an account-level xpub).
M_0H_1_2H = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"


def b58decode_check(text: str) -> bytes:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = 0
    for char in text:
        number = number * 58 + alphabet.index(char)
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    payload, checksum = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == checksum
    return payload


def ckd_pub(key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    digest = hmac.new(chain_code, key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    return PublicKey(key).add(digest[:32]).format(compressed=True), digest[32:]


def evm_address(key: bytes) -> str:
    uncompressed = PublicKey(key).format(compressed=False)
    return "0x" + keccak.new(data=uncompressed[1:], digest_bits=256).digest()[-20:].hex()


def reference_addresses(account_xpub: str, count: int) -> list[str]:
    payload = b58decode_check(account_xpub)
    external = ckd_pub(payload[45:78], payload[13:45], 0)
    return [evm_address(ckd_pub(*external, i)[0]) for i in range(count)]
