"""The PKCS#11 mechanisms Kassa needs, and which of them a module lacks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pkcs11 import Mechanism


@dataclass(frozen=True)
class Requirement:
    mechanism: Mechanism
    purpose: str

    @property
    def name(self) -> str:
        return mechanism_name(self.mechanism)


REQUIRED = (
    Requirement(Mechanism.EC_KEY_PAIR_GEN, "generate secp256k1 hot keys inside the token"),
    Requirement(Mechanism.ECDSA, "sign transaction digests with hot keys"),
    Requirement(Mechanism.AES_KEY_GEN, "generate the seed key-encryption key"),
    Requirement(Mechanism.AES_GCM, "encrypt the HD seed under the key-encryption key"),
)


def mechanism_name(mechanism: int) -> str:
    try:
        return "CKM_" + Mechanism(mechanism).name
    except ValueError:
        return f"CKM_{mechanism:#010x}"


def missing(offered: Iterable[int]) -> list[Requirement]:
    have = {int(m) for m in offered}
    return [r for r in REQUIRED if int(r.mechanism) not in have]
