"""KeyInfo to the wire message."""

from __future__ import annotations

from kassa.signer.v1 import signer_pb2
from signer.keyring import KeyInfo

_KINDS = {"hot": signer_pb2.KEY_KIND_HOT, "hd": signer_pb2.KEY_KIND_HD_ACCOUNT}


def key_message(key: KeyInfo) -> signer_pb2.Key:
    return signer_pb2.Key(
        key_id=key.key_id,
        label=key.label,
        kind=_KINDS[key.kind],
        public_key=key.public_key,
        address=key.address,
        xpub=key.xpub,
        derivation_path=key.derivation_path,
        attributes=key.attributes,
    )
