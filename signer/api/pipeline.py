"""Sign, step by step: authenticate, validity window, request-id guard, decode, intent,
policy, key, HSM signature, audit — each refusing with its own reason, every outcome audited
durably before the answer.

The pure steps run on the event loop; the guard, the decision and the velocity
reservation run as one operation on the store thread (one transaction, so they
are atomic against every other request, in this process or another sharing the
file); the signature runs on the HSM thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coincurve import PrivateKey

from kassa.signer.v1 import signer_pb2
from signer import keyring, metrics
from signer.api.errors import Refusal
from signer.api.reasons import refusal
from signer.chains import tron_address
from signer.chains.decoded import Decoded, decode, is_tron
from signer.chains.evm_tx import TxDecodeError
from signer.chains.intent import Intent, IntentInvalid, IntentMismatch, mismatch, parse_intent
from signer.config import Config
from signer.envelope.authenticate import Authenticated, authenticate
from signer.envelope.digest import body_digest
from signer.envelope.validity import HARDENED, check_window, hd_index, parse_body
from signer.hd import account as hd_account
from signer.hd.bip32 import child_public, parse_extended_key, uncompressed
from signer.hsm.thread import HsmThread
from signer.hsm.token import HsmError, TokenSession
from signer.policy.decide import Decision, Facts, applicable_caps, decide, movements
from signer.policy.model import Policy
from signer.secp256k1 import (
    RecoverableSignature,
    SignatureError,
    address_of,
    normalise_low_s,
    recoverable,
)
from signer.state import store
from signer.state.seed_file import SeedFileError
from signer.state.store import StoreThread, StoreUnavailable

log = logging.getLogger("signer.sign")
# Bounds on envelope fields that reach the audit log and the logs (the body's own fields are
# bounded in signer.envelope.validity).
MAX_KEY_ID_CHARS = 64
MAX_SUBJECT_CHARS = 256
MAX_APPROVALS = 8
# Test-only fault point: seconds to wait between admission and the HSM signature, so tests can
# cancel a call that was admitted (its audit record and reservation) deterministically.
FAULT_SIGN_DELAY_S = float(os.environ.get("KASSA_SIGNER_FAULT_SIGN_DELAY_S", "0") or 0)
_PURPOSE_NAMES = {v: k.removeprefix("PURPOSE_") for k, v in signer_pb2.Purpose.items()}


class PolicyHolder:
    """The policy in force; replaced whole on reload, read once per request."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy


@dataclass
class Audit:
    """The audit record's fields, filled in as the pipeline learns them."""

    caller: dict[str, str]
    request_hash: str
    request_id: str | None = None
    key_id: str | None = None
    intent: dict[str, str] | None = None
    policy_hash: str | None = None
    detail: dict[str, str] = field(default_factory=dict)

    def fields(
        self, decision: str, reason: str, signature_hash: str | None = None, tx: str | None = None
    ) -> dict[str, Any]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "caller": self.caller,
            "request_id": self.request_id,
            "request_hash": self.request_hash,
            "key_id": self.key_id,
            "intent": self.intent,
            "decision": decision,
            "reason": reason,
            "detail": self.detail,
            "policy_hash": self.policy_hash,
            "signature_hash": signature_hash,
            "tx_hash": tx,
        }


@dataclass(frozen=True)
class Admitted:
    decision: Decision


@dataclass(frozen=True)
class Replayed:
    response: bytes


@dataclass(frozen=True)
class Prepared:
    """What the pure steps learned about a request whose envelope and window are good."""

    body: signer_pb2.SignRequestBody
    body_hash: str
    tx: Decoded | None
    intent: Intent | None
    # The first refusal from decoding, intent or key lookup; applied after the request-id
    # guard so that the reasons come in pipeline order.
    refusal_after_guard: Refusal | None
    key_refusal: Refusal | None


class SignPipeline:
    def __init__(
        self,
        config: Config,
        hsm: HsmThread,
        session: TokenSession,
        xpub: str | None,
        db: StoreThread,
        policy: PolicyHolder,
        hot_keys: set[str],
    ) -> None:
        self._config = config
        self._hsm = hsm
        self._session = session
        self._xpub = xpub
        self._db = db
        self._policy = policy
        self._hot_keys = hot_keys
        self._callers = {c.key_id: c for c in config.callers}
        self._approvers = {a.key_id: a for a in config.approvers}
        self._caller_subjects = {c.tls_subject for c in config.callers if c.tls_subject}

    async def sign(
        self, envelope: signer_pb2.SignedEnvelope, tls_subject: str | None, tls13: bool
    ) -> signer_pb2.SignResponse:
        """Returns the response or raises Refusal; either way the outcome is audited first."""
        try:
            response, replayed = await self._sign(envelope, tls_subject, tls13)
        except Refusal as r:
            metrics.DECISIONS.labels(r.reason).inc()
            raise
        metrics.DECISIONS.labels("REPLAYED" if replayed else "SIGNED").inc()
        return response

    async def _sign(
        self, envelope: signer_pb2.SignedEnvelope, tls_subject: str | None, tls13: bool
    ) -> tuple[signer_pb2.SignResponse, bool]:
        audit = Audit(
            caller={
                "key_id": bounded(envelope.caller_key_id, MAX_KEY_ID_CHARS),
                "tls_subject": bounded(tls_subject or "", MAX_SUBJECT_CHARS),
            },
            request_hash=body_digest(envelope.body).hex(),
        )
        policy = self._policy.current
        audit.policy_hash = policy.hash
        if self._config.tls is not None and not tls13:
            raise await self._refused(
                audit, refusal("TLS_VERSION_REFUSED", "the signer accepts TLS 1.3 only")
            )
        oversized = envelope_bounds(envelope)
        if oversized is not None:
            raise await self._refused(audit, oversized)
        early = self._authenticate(envelope, tls_subject, audit)
        if isinstance(early, Refusal):
            raise await self._refused(audit, early)
        prepared = await self._prepare(early, envelope.body, audit)
        if isinstance(prepared, Refusal):
            raise await self._refused(audit, prepared)
        facts = None
        if prepared.intent is not None:
            assert prepared.tx is not None
            facts = Facts(
                caller_role=early.caller.role,
                key_id=prepared.body.key_id,
                purpose=prepared.intent.purpose,
                asset=prepared.intent.asset,
                destination=prepared.intent.destination,
                amount=prepared.intent.amount,
                approvers=early.approvers,
                chain=prepared.intent.chain,
                fee=prepared.tx.fee,
                derived_destination=self._derived(prepared.body.intent, prepared.body.chain),
                key_address=await self._own_address(prepared.body.key_id, prepared.intent),
                data_bytes=prepared.tx.data_bytes,
            )
        admission = asyncio.ensure_future(self._store(self._admit(prepared, facts, policy, audit)))
        try:
            # Shielded: once queued, the admission runs whether or not the caller stays.
            admitted = await asyncio.shield(admission)
        except asyncio.CancelledError:
            await self._after_cancel(admission, prepared, audit, "admission")
            raise
        if isinstance(admitted, Refusal):
            raise admitted
        if isinstance(admitted, Replayed):
            return signer_pb2.SignResponse.FromString(admitted.response), True
        assert prepared.tx is not None
        signing = asyncio.ensure_future(self._sign_and_record(prepared, prepared.tx, audit))
        try:
            return await asyncio.shield(signing), False
        except asyncio.CancelledError:
            await self._after_cancel(signing, prepared, audit, "signing")
            raise

    async def _after_cancel(
        self, step: asyncio.Future[Any], prepared: Prepared, audit: Audit, during: str
    ) -> None:
        """The caller cancelled or disconnected after its request was queued for admission.

        An admission runs to its end (its store operation is queued and cannot be taken
        back; only then is it known whether it reserved). A signing is stopped where it is:
        a signature the HSM thread still makes is dropped, never returned; an answer already
        queued for recording is recorded. Then, if the request was admitted but no answer
        recorded, its request id is released (a retry is admitted afresh) and its velocity
        reservation KEPT — counted as spent, the conservative side. The audit record says
        which happened."""
        if during == "signing":
            step.cancel()
        try:
            outcome = await step
        except asyncio.CancelledError:
            outcome = None  # the signing stopped part-way; the store says how far it got
        except BaseException:
            return
        if during == "admission" and not isinstance(outcome, Admitted):
            return  # refused or replayed: already audited, nothing reserved
        request_id = prepared.body.request_id

        def op(conn: sqlite3.Connection) -> None:
            row = store.lookup_request(conn, request_id)
            if row is None:
                return  # released by a failed signature, which audited itself
            if row.response is None:
                store.release_request(conn, request_id)
                audit.detail.update(
                    cancelled_during=during,
                    velocity="reservation kept: counted as spent",
                    request_id_guard="released",
                    signature="not returned",
                )
            else:
                audit.detail.update(
                    cancelled_during=during,
                    velocity="accounted: signed and recorded before the cancel",
                    request_id_guard="kept: a retry replays the recorded answer",
                    signature="recorded",
                )
            store.append_audit(conn, audit.fields("REFUSED", "REQUEST_CANCELLED"))

        with contextlib.suppress(Refusal):
            await self._store(op)
        log.info("sign cancelled by the caller", extra={"request_id": request_id, "during": during})

    async def key_read_refusal(self, method: str, tls_subject: str | None) -> Refusal | None:
        """None when the connection's certificate is an allowlisted caller's (or, without
        TLS, on the loopback development listener); else the refusal, audited."""
        if self._config.tls is None or tls_subject in self._caller_subjects:
            return None
        audit = Audit(
            caller={"tls_subject": bounded(tls_subject or "", MAX_SUBJECT_CHARS)},
            request_hash="",
            policy_hash=self._policy.current.hash,
            detail={"method": method},
        )
        return await self._refused(
            audit,
            refusal(
                "CALLER_NOT_ALLOWED",
                "key lookups are answered only to allowlisted callers",
                method=method,
            ),
        )

    def _derived(self, intent: signer_pb2.Intent, chain: str) -> str | None:
        """The deposit address for the index a GAS_FUNDING names, from the signer's own seed
        (its account xpub), in the chain's address form; never taken from the caller."""
        if (
            self._xpub is None
            or intent.purpose != signer_pb2.PURPOSE_GAS_FUNDING
            or not intent.HasField("destination_hd_index")
        ):
            return None
        if intent.destination_hd_index >= HARDENED:
            return None
        if is_tron(chain):
            child = child_public(_external_chain(self._xpub), intent.destination_hd_index)
            return tron_address.of_public_key(child.public_key())
        return deposit_address(self._xpub, intent.destination_hd_index)

    async def _own_address(self, key_id: str, intent: Intent) -> str | None:
        """NONCE_FILL only: the hot key's own EVM address, from its public key in the token
        (the only destination a nonce fill may have; the caller's word is never taken for
        it). None for other purposes, deposit keys and keys the token does not hold."""
        if intent.purpose != "NONCE_FILL" or hd_index(key_id) is not None or is_tron(intent.chain):
            return None
        try:
            hot = await self._hsm.acall(self._session.hot_key, key_id)
        except HsmError as exc:
            log.error("key lookup failed", extra={"key_id": key_id, "error": str(exc)})
            return None
        return None if hot is None else hot.address

    def _authenticate(
        self, envelope: signer_pb2.SignedEnvelope, tls_subject: str | None, audit: Audit
    ) -> Authenticated | Refusal:
        checked = authenticate(
            envelope, tls_subject, self._config.tls is not None, self._callers, self._approvers
        )
        if isinstance(checked, Authenticated):
            audit.caller["role"] = checked.caller.role
            if checked.approvers:
                audit.detail["approvals"] = ",".join(sorted(checked.approvers))
        return checked

    async def _prepare(
        self, authenticated: Authenticated, raw_body: bytes, audit: Audit
    ) -> Prepared | Refusal:
        body = parse_body(raw_body)
        if isinstance(body, Refusal):
            return body
        audit.request_id, audit.key_id = body.request_id, body.key_id
        limits = self._config.limits
        window = check_window(
            body.issue_time.ToNanoseconds() / 1e9,
            body.expire_time.ToNanoseconds() / 1e9,
            time.time(),
            limits.max_lifetime_s,
            limits.max_skew_s,
        )
        if window is not None:
            return window
        tx, intent, later = None, None, None
        try:
            tx = decode(body.chain, body.unsigned_transaction)
            # The decoded fee fields go into the record from here on, whatever follows.
            audit.intent = tx.audit_fields()
            i = body.intent
            intent = parse_intent(
                body.chain,
                i.asset,
                i.destination,
                i.amount,
                _PURPOSE_NAMES.get(i.purpose, "UNSPECIFIED"),
                i.reference,
                i.tx_id,
            )
            audit.intent = {**intent.summary(), **audit.intent}
            if i.HasField("destination_hd_index"):
                audit.intent["destination_hd_index"] = str(i.destination_hd_index)
            wrong = mismatch(intent, tx.transfer, tx.tx_id)
            if wrong is None and tx.owner is not None:
                wrong = await self._owner_mismatch(body.key_id, tx.owner)
            if wrong is not None:
                raise wrong
        except TxDecodeError as exc:
            later = refusal("TX_DECODE_FAILED", str(exc), problem=exc.problem)
        except IntentInvalid as exc:
            later = refusal("INTENT_INVALID", str(exc), field=exc.field)
        except IntentMismatch as exc:
            later = refusal(
                "INTENT_MISMATCH", str(exc), field=exc.field, stated=exc.stated, actual=exc.actual
            )
        if later is not None:
            intent = None
        return Prepared(
            body,
            hashlib.sha256(raw_body).hexdigest(),
            tx,
            intent,
            later,
            await self._key_refusal(body.key_id),
        )

    async def _owner_mismatch(self, key_id: str, owner: str) -> IntentMismatch | None:
        """TRON names its sender in raw_data: it must be the key's own address (an unknown key
        is left to the key step, which refuses it by name)."""
        index = hd_index(key_id)
        if index is not None:
            if self._xpub is None:
                return None
            public_key = child_public(_external_chain(self._xpub), index).public_key()
        else:
            try:
                hot = await self._hsm.acall(self._session.hot_key, key_id)
            except HsmError:
                return None  # the key step looks again and refuses SIGNING_FAILED
            if hot is None:
                return None
            public_key = hot.public_key
        own = tron_address.of_public_key(public_key)
        return None if own == owner else IntentMismatch("owner", own, owner)

    async def _key_refusal(self, key_id: str) -> Refusal | None:
        if hd_index(key_id) is not None:
            if self._xpub is None:
                return refusal(
                    "KEY_NOT_FOUND", "no HD seed: run `kassa-signer keys init`", key_id=key_id
                )
            return None
        if key_id not in self._hot_keys:
            # A key made after start (keys create) is found on the first request naming it.
            try:
                fresh = await self._hsm.acall(self._session.hot_key, key_id)
            except HsmError as exc:
                log.error("key lookup failed", extra={"key_id": key_id, "error": str(exc)})
                return refusal(
                    "SIGNING_FAILED", "the HSM could not look the key up", problem="key_lookup"
                )
            if fresh is None:
                return refusal("KEY_NOT_FOUND", f"no key {key_id!r}", key_id=key_id)
            self._hot_keys.add(key_id)
        return None

    def _admit(
        self, prepared: Prepared, facts: Facts | None, policy: Policy, audit: Audit
    ) -> Callable[[sqlite3.Connection], Admitted | Replayed | Refusal]:
        body = prepared.body

        def op(conn: sqlite3.Connection) -> Admitted | Replayed | Refusal:
            def refuse(r: Refusal) -> Refusal:
                audit.detail.update(r.metadata)
                store.append_audit(conn, audit.fields("REFUSED", r.reason))
                return r

            seen = store.lookup_request(conn, body.request_id)
            if seen is not None:
                if seen.body_hash != prepared.body_hash:
                    return refuse(
                        refusal(
                            "REQUEST_ID_REUSED",
                            "this request id was used with another body",
                            request_id=body.request_id,
                        )
                    )
                if seen.response is None:
                    return refuse(
                        refusal(
                            "REQUEST_IN_FLIGHT",
                            "this request is being signed; retry shortly",
                            request_id=body.request_id,
                        )
                    )
                first = signer_pb2.SignResponse.FromString(seen.response)
                store.append_audit(
                    conn,
                    audit.fields(
                        "REPLAYED", "REQUEST_REPLAYED", _signature_hash(first), first.tx_hash
                    ),
                )
                return Replayed(seen.response)
            if prepared.refusal_after_guard is not None:
                return refuse(prepared.refusal_after_guard)
            assert facts is not None
            now_s = time.time()
            caps = applicable_caps(policy, facts)
            used = {
                cap: store.velocity_used(conn, cap.bucket, cap.asset, cap.window_s, now_s)
                for cap in caps
            }
            decision = decide(facts, policy, used)
            if not decision.allowed:
                return refuse(
                    refusal(decision.reason, f"policy: {decision.reason}", **decision.metadata)
                )
            if prepared.key_refusal is not None:
                return refuse(prepared.key_refusal)
            audit.detail.update(decision.metadata)
            moved = movements(facts)
            # One reservation per counter, however many caps (windows) read it.
            for bucket, asset in dict.fromkeys((c.bucket, c.asset) for c in caps):
                store.reserve(conn, bucket, asset, moved[asset], now_s)
            store.claim_request(conn, body.request_id, prepared.body_hash, now_s)
            return Admitted(decision)

        return op

    async def _sign_and_record(
        self, prepared: Prepared, tx: Decoded, audit: Audit
    ) -> signer_pb2.SignResponse:
        request_id = prepared.body.request_id
        if FAULT_SIGN_DELAY_S:
            await asyncio.sleep(FAULT_SIGN_DELAY_S)
        # The decoder checked that the bytes are exactly the transaction's canonical encoding,
        # so the digest is taken from them without encoding the transaction a second time.
        digest = tx.digest(prepared.body.unsigned_transaction)
        try:
            signature = await self._sign_digest(prepared.body.key_id, digest)
        except (HsmError, SignatureError, SeedFileError) as exc:
            log.error("signing failed", extra={"request_id": request_id, "error": str(exc)})

            def failed(conn: sqlite3.Connection) -> None:
                store.release_request(conn, request_id)
                store.append_audit(conn, audit.fields("REFUSED", "SIGNING_FAILED"))

            await self._store(failed)
            raise refusal("SIGNING_FAILED", "the HSM did not produce a signature") from None
        raw = tx.signed(signature.r, signature.s, signature.recovery_id)
        response = signer_pb2.SignResponse(
            signed_transaction=raw,
            tx_hash=tx.tx_hash(raw),
            signature=signature.rs_bytes(),
            recovery_id=signature.recovery_id,
        )

        def record(conn: sqlite3.Connection) -> bytes:
            response.audit_record_hash = store.append_audit(
                conn, audit.fields("SIGNED", "ALLOWED", _signature_hash(response), response.tx_hash)
            )
            encoded = response.SerializeToString(deterministic=True)
            store.complete_request(conn, request_id, encoded)
            return encoded

        await self._store(record)
        log.info(
            "signed",
            extra={
                "request_id": request_id,
                "key_id": prepared.body.key_id,
                "tx_hash": response.tx_hash,
                "audit_record_hash": response.audit_record_hash,
            },
        )
        return response

    async def _sign_digest(self, key_id: str, digest: bytes) -> RecoverableSignature:
        index = hd_index(key_id)
        start = time.perf_counter()
        if index is None:
            # The recovery id is found on the HSM thread too (see _sign_hot): observed here
            # with the signature, a few tens of microseconds of the histogram's bucket.
            signature = await self._hsm.acall(_sign_hot, self._session, key_id, digest)
            metrics.HSM_SECONDS.labels("hot").observe(time.perf_counter() - start)
            return signature
        signature = await self._hsm.acall(
            _sign_hd, self._session, self._config.seed_path, index, digest
        )
        metrics.HSM_SECONDS.labels("hd").observe(time.perf_counter() - start)
        return signature

    async def _store(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            with metrics.AUDIT_APPEND_SECONDS.time():
                return await self._db.acall(op)
        except StoreUnavailable as exc:
            log.error("audit unavailable", extra={"error": str(exc)})
            raise refusal(
                "AUDIT_UNAVAILABLE",
                "the audit log cannot be written; nothing was signed or answered",
            ) from None

    async def _refused(self, audit: Audit, r: Refusal) -> Refusal:
        audit.detail.update(r.metadata)
        fields = audit.fields("REFUSED", r.reason)
        await self._store(lambda conn: store.append_audit(conn, fields))
        return r


def bounded(text: str, most: int) -> str:
    """text as the audit log may hold it: at most `most` characters, marked when cut."""
    return text if len(text) <= most else text[:most] + f"...({len(text)} chars)"


def envelope_bounds(envelope: signer_pb2.SignedEnvelope) -> Refusal | None:
    """The first envelope field over its bound, checked before anything is looked up."""
    if len(envelope.caller_key_id) > MAX_KEY_ID_CHARS:
        return refusal(
            "FIELD_TOO_LONG",
            f"caller_key_id exceeds {MAX_KEY_ID_CHARS} characters",
            field="caller_key_id",
        )
    if len(envelope.approvals) > MAX_APPROVALS:
        return refusal("FIELD_TOO_LONG", f"more than {MAX_APPROVALS} approvals", field="approvals")
    for approval in envelope.approvals:
        if len(approval.approver_key_id) > MAX_KEY_ID_CHARS:
            return refusal(
                "FIELD_TOO_LONG",
                f"approver_key_id exceeds {MAX_KEY_ID_CHARS} characters",
                field="approvals.approver_key_id",
            )
    return None


@functools.lru_cache(maxsize=4096)
def deposit_address(xpub: str, index: int) -> str:
    """m/44'/60'/0'/0/index's address from the account xpub (public derivation only)."""
    external = _external_chain(xpub)
    return address_of(uncompressed(child_public(external, index).public_key()))


@functools.lru_cache(maxsize=4)
def _external_chain(xpub: str) -> Any:
    return child_public(parse_extended_key(xpub), 0)


def _signature_hash(response: signer_pb2.SignResponse) -> str:
    return hashlib.sha256(response.signature + bytes([response.recovery_id])).hexdigest()


def _sign_hot(session: TokenSession, key_id: str, digest: bytes) -> RecoverableSignature:
    """On the HSM thread: the token's r||s, and its recovery id found there too. The recovery
    (libsecp256k1 through cffi, which lets go of the GIL) then runs beside the event loop
    instead of on it: the loop, not the HSM thread, is what limits one process."""
    rs, public_key = session.sign_raw(key_id, digest)
    return recoverable(digest, rs, public_key)


def _sign_hd(
    session: TokenSession, seed_path: Path, index: int, digest: bytes
) -> RecoverableSignature:
    """On the HSM thread: decrypt the seed in the token, derive m/44'/60'/0'/0/index in memory,
    sign in software. The child key never exists in the token; the seed buffer is zeroed by
    account_key, and the child's secret is copied into a bytearray zeroed here (Python's
    immutable intermediates cannot be wiped; they die with this call)."""
    child = keyring.deposit_child(session, seed_path, index)
    secret = bytearray(child.key)
    try:
        compact = PrivateKey(bytes(secret)).sign_recoverable(digest, hasher=None)
    finally:
        hd_account.wipe(secret)
    r, s = int.from_bytes(compact[:32], "big"), int.from_bytes(compact[32:64], "big")
    low_r, low_s = normalise_low_s(r, s)
    recovery_id = compact[64] ^ (1 if low_s != s else 0)
    return RecoverableSignature(low_r, low_s, recovery_id)
