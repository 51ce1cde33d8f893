"""A logged-in PKCS#11 session and the key operations the signer performs in it.

Everything here must run on the HsmThread; TokenSession is confined to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from signer.config import HsmConfig
from signer.hsm.mechanisms import Requirement, mechanism_name, missing
from signer.secp256k1 import address_of

KEK_LABEL = "kassa-seed-kek"
GCM_IV_BYTES = 12
SECP256K1_PARAMS = encode_named_curve_parameters("secp256k1")

# python-pkcs11's stubs leave sign/encrypt/label (mixins of the Cython classes) untyped,
# so its objects are handled as Any here and typed at this module's boundary instead.
Token = Any
Session = Any
Object = Any
PrivateKey = Any
PublicKey = Any
SecretKey = Any

REPORTED_ATTRIBUTES = {
    "token": Attribute.TOKEN,
    "private": Attribute.PRIVATE,
    "sensitive": Attribute.SENSITIVE,
    "extractable": Attribute.EXTRACTABLE,
    "never_extractable": Attribute.NEVER_EXTRACTABLE,
    "always_sensitive": Attribute.ALWAYS_SENSITIVE,
    "local": Attribute.LOCAL,
    "sign": Attribute.SIGN,
    "decrypt": Attribute.DECRYPT,
    "encrypt": Attribute.ENCRYPT,
    "wrap": Attribute.WRAP,
    "unwrap": Attribute.UNWRAP,
    "derive": Attribute.DERIVE,
}


class HsmError(Exception):
    """The HSM cannot be used; the message names why, in one line."""


class MissingMechanisms(HsmError):
    def __init__(self, module: str, token_label: str, lacking: list[Requirement]) -> None:
        self.lacking = lacking
        names = ", ".join(f"{r.name} ({r.purpose})" for r in lacking)
        super().__init__(f"token {token_label!r} of {module} lacks required mechanisms: {names}")


@dataclass(frozen=True)
class HotKey:
    label: str
    public_key: bytes
    attributes: dict[str, str]

    @property
    def address(self) -> str:
        return address_of(self.public_key)


def load_module(module: str) -> Any:
    try:
        return pkcs11.lib(module)
    except pkcs11.PKCS11Error as exc:
        if str(exc):  # the dynamic loader's own message: missing file, wrong architecture...
            raise HsmError(f"cannot load PKCS#11 module {module}: {exc}") from None
        raise HsmError(
            f"PKCS#11 module {module} loaded but C_Initialize failed ({type(exc).__name__}): "
            "is its daemon or configuration in place (e.g. pkcsslotd for opencryptoki)?"
        ) from None


def find_token(lib: Any, module: str, token_label: str) -> Token:
    try:
        return lib.get_token(token_label=token_label)
    except pkcs11.NoSuchToken:
        labels = sorted(t.label for t in lib.get_tokens())
        found = ", ".join(repr(label) for label in labels) or "none"
        raise HsmError(
            f"no token labelled {token_label!r} in {module} (tokens present: {found})"
        ) from None
    except pkcs11.MultipleTokensReturned:
        raise HsmError(f"more than one token labelled {token_label!r} in {module}") from None


def offered_mechanisms(token: Token) -> set[int]:
    return {int(m) for m in token.slot.get_mechanisms()}


def login(token: Token, pin: str) -> Session:
    try:
        return token.open(rw=True, user_pin=pin)
    except pkcs11.PinIncorrect:
        raise HsmError(
            f"the PIN was rejected by token {token.label!r} (CKR_PIN_INCORRECT)"
        ) from None
    except pkcs11.PinLocked:
        raise HsmError(f"token {token.label!r} has locked its user PIN (CKR_PIN_LOCKED)") from None
    except pkcs11.UserPinNotInitialized:
        raise HsmError(f"token {token.label!r} has no user PIN set") from None
    except (pkcs11.PinLenRange, pkcs11.PinInvalid):
        raise HsmError(
            f"the PIN has a length or characters token {token.label!r} refuses"
        ) from None


def probe_secp256k1(session: Session) -> None:
    """Offering CKM_EC_KEY_PAIR_GEN says nothing about which curves; try one."""
    try:
        public, private = _secp256k1_keypair(session, label="kassa-probe", store=False)
        try:
            private.sign(bytes(32), mechanism=Mechanism.ECDSA)
        finally:
            private.destroy()
            public.destroy()
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"secp256k1 key generation or ECDSA failed: {type(exc).__name__}") from None


def _secp256k1_keypair(session: Session, label: str, store: bool) -> tuple[PublicKey, PrivateKey]:
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: SECP256K1_PARAMS}, local=True
    )
    return params.generate_keypair(  # type: ignore[no-any-return]
        store=store,
        label=label,
        id=label.encode(),
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        private_template={
            Attribute.TOKEN: store,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        },
        public_template={Attribute.TOKEN: store, Attribute.VERIFY: True},
    )


def attributes_of(obj: Object) -> dict[str, str]:
    out = {}
    for name, attribute in REPORTED_ATTRIBUTES.items():
        try:
            value = obj[attribute]
        except pkcs11.PKCS11Error:
            continue  # not every attribute applies to every object class
        out[name] = str(bool(value)).lower()
    return out


def _ec_point(public: PublicKey) -> bytes:
    # CKA_EC_POINT is a DER OCTET STRING around the SEC1 point in most modules.
    point = bytes(public[Attribute.EC_POINT])
    if len(point) == 67 and point[:2] == b"\x04\x41":
        point = point[2:]
    if len(point) != 65 or point[0] != 0x04:
        raise HsmError("token returned an EC point that is not an uncompressed secp256k1 point")
    return point


@dataclass
class TokenSession:
    module: str
    token: Token
    session: Session
    _signing_keys: dict[str, tuple[PrivateKey, bytes]] = field(default_factory=dict)

    @classmethod
    def open(cls, config: HsmConfig, pin: str) -> TokenSession:
        """Refuses a module lacking any required mechanism before it touches a key."""
        lib = load_module(config.module)
        token = find_token(lib, config.module, config.token_label)
        lacking = missing(offered_mechanisms(token))
        if lacking:
            raise MissingMechanisms(config.module, config.token_label, lacking)
        session = login(token, pin)
        probe_secp256k1(session)
        return cls(config.module, token, session)

    def close(self) -> None:
        self._signing_keys.clear()
        self.session.close()

    def random_bytes(self, count: int) -> bytearray:
        return bytearray(self.session.generate_random(count * 8))

    # -- hot keys

    def hot_keys(self) -> list[HotKey]:
        # A find operation must finish before the next starts (CKR_OPERATION_ACTIVE).
        privates = list(
            self.session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                    Attribute.KEY_TYPE: KeyType.EC,
                    Attribute.TOKEN: True,
                }
            )
        )
        keys = []
        for private in privates:
            label = private.label
            keys.append(HotKey(label, self._public_point(label), attributes_of(private)))
        return sorted(keys, key=lambda k: k.label)

    def hot_key(self, label: str) -> HotKey | None:
        private = self._private(label)
        if private is None:
            return None
        return HotKey(label, self._public_point(label), attributes_of(private))

    def create_hot_key(self, label: str) -> HotKey:
        if not label or label == "hd" or label.startswith("hd:") or label == KEK_LABEL:
            raise HsmError(f"{label!r} is reserved or empty; choose another hot key label")
        if self._private(label) is not None:
            raise HsmError(f"a hot key labelled {label!r} already exists")
        public, private = _secp256k1_keypair(self.session, label=label, store=True)
        return HotKey(label, _ec_point(public), attributes_of(private))

    def sign_raw(self, label: str, digest: bytes) -> tuple[bytes, bytes]:
        """Returns (r||s as the token gave it, the key's uncompressed public key)."""
        if len(digest) != 32:
            raise ValueError("ECDSA signs a 32-byte digest")
        cached = self._signing_keys.get(label)
        if cached is None:
            private = self._private(label)
            if private is None:
                raise HsmError(f"no hot key labelled {label!r}")
            cached = (private, self._public_point(label))
            self._signing_keys[label] = cached
        private, public_key = cached
        return bytes(private.sign(digest, mechanism=Mechanism.ECDSA)), public_key

    def _private(self, label: str) -> PrivateKey | None:
        try:
            return self.session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label
            )
        except pkcs11.NoSuchKey:
            return None

    def _public_point(self, label: str) -> bytes:
        public = self.session.get_key(
            object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label
        )
        return _ec_point(public)

    # -- seed key-encryption key

    def kek(self) -> SecretKey | None:
        try:
            return self.session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=KEK_LABEL
            )
        except pkcs11.NoSuchKey:
            return None

    def ensure_kek(self) -> tuple[SecretKey, bool]:
        """Returns the KEK and whether it was created now."""
        existing = self.kek()
        if existing is not None:
            return existing, False
        created = self.session.generate_key(
            KeyType.AES,
            256,
            label=KEK_LABEL,
            id=KEK_LABEL.encode(),
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
                Attribute.DERIVE: False,
            },
        )
        return created, True

    def kek_attributes(self) -> dict[str, str]:
        kek = self.kek()
        return {} if kek is None else attributes_of(kek)

    def encrypt_seed(self, plaintext: bytes | bytearray, aad: bytes) -> tuple[bytes, bytes]:
        kek = self.kek()
        if kek is None:
            raise HsmError(f"no key-encryption key {KEK_LABEL!r} on the token")
        iv = bytes(self.session.generate_random(GCM_IV_BYTES * 8))
        ciphertext = kek.encrypt(
            bytes(plaintext),
            mechanism=Mechanism.AES_GCM,
            mechanism_param=pkcs11.GCMParams(iv, aad),
        )
        return iv, bytes(ciphertext)

    def decrypt_seed(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytearray:
        kek = self.kek()
        if kek is None:
            raise HsmError(
                f"no key-encryption key {KEK_LABEL!r} on token {self.token.label!r}: "
                "the seed file belongs to another token"
            )
        try:
            plaintext = kek.decrypt(
                ciphertext,
                mechanism=Mechanism.AES_GCM,
                mechanism_param=pkcs11.GCMParams(iv, aad),
            )
        except pkcs11.PKCS11Error:
            # SoftHSM reports a bad GCM tag as CKR_GENERAL_ERROR, so no finer reason exists.
            raise HsmError("the seed file does not decrypt under this token's KEK") from None
        return bytearray(plaintext)


def describe_mechanisms(offered: set[int]) -> list[str]:
    return sorted(mechanism_name(m) for m in offered)
