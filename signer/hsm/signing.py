"""Signing a digest with a hot key: raw ECDSA in the token, low-S and recovery id outside."""

from __future__ import annotations

from signer.hsm.thread import HsmThread
from signer.hsm.token import TokenSession
from signer.secp256k1 import RecoverableSignature, recoverable


def sign_digest(
    thread: HsmThread, session: TokenSession, label: str, digest: bytes
) -> RecoverableSignature:
    rs, public_key = thread.call(session.sign_raw, label, digest)
    return recoverable(digest, rs, public_key)


async def asign_digest(
    thread: HsmThread, session: TokenSession, label: str, digest: bytes
) -> RecoverableSignature:
    rs, public_key = await thread.acall(session.sign_raw, label, digest)
    return recoverable(digest, rs, public_key)
