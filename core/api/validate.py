"""Request validation: pure functions from a request to a spec or to the list
of every field that is wrong (all of them at once, not the first)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal, assert_never, cast

from core import idempotency, names
from core.api import page_tokens
from core.config import Config
from core.domain.invoice_specs import InvoiceFilter, InvoiceSpec
from core.domain.money import AmountError, fiat_violations, parse_base_units, parse_decimal
from kassa.core.v1 import invoice_pb2 as pb

_CURRENCY = re.compile(r"[A-Z]{3}")
MAX_ORDER_ID_LEN = 200
MAX_METADATA_KEYS = 50
MAX_METADATA_VALUE_LEN = 500
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Violations = list[tuple[str, str]]
# CreateInvoiceRequest's oneof amount (the generated stubs type it as str;
# tests/unit/test_oneofs.py keeps this list equal to the proto's).
AmountKind = Literal["price", "asset_amount"]

# An error may quote what it refuses, but never more than this much of it:
# the caller's own input echoed back unbounded broke the 16 KiB header limit.
ECHO_MAX = 64


def prefix(text: str) -> str:
    """At most ECHO_MAX characters of `text`, marked when cut."""
    return text if len(text) <= ECHO_MAX else text[:ECHO_MAX] + "…"


def merchant_of(parent: str, violations: Violations, field: str = "parent") -> str:
    merchant_id = names.parse_merchant(parent)
    if merchant_id is None:
        violations.append((field, "must be merchants/{merchant}, e.g. merchants/acme"))
        return ""
    return merchant_id


def invoice_name(name: str) -> tuple[str, str] | None:
    return names.parse_invoice(name)


def create_invoice(
    request: pb.CreateInvoiceRequest, config: Config
) -> tuple[InvoiceSpec | None, Violations]:
    violations: Violations = []
    merchant = merchant_of(request.parent, violations)
    request_id = idempotency.request_id_of(request.request_id, violations)
    order_id = request.merchant_order_id
    if not order_id.strip():
        violations.append(("merchant_order_id", "is required"))
    elif len(order_id) > MAX_ORDER_ID_LEN:
        violations.append(("merchant_order_id", f"must be at most {MAX_ORDER_ID_LEN} characters"))
    asset = config.asset(request.asset.lower()) if request.asset else None
    if not request.asset:
        violations.append(("asset", "is required (a CAIP-19 asset id)"))
    elif asset is None:
        known = ", ".join(a.id for a in config.assets)
        violations.append(("asset", f"unknown asset {prefix(request.asset)!r}; known: {known}"))
    price = currency = amount = None
    which = cast("AmountKind | None", request.WhichOneof("amount"))
    match which:
        case None:
            violations.append(("amount", "one of price or asset_amount is required"))
        case "price":
            try:
                price = parse_decimal(request.price.amount)
            except AmountError as exc:
                violations.append(("price.amount", str(exc)))
            currency = request.price.currency
            if _CURRENCY.fullmatch(currency) is None:
                violations.append(("price.currency", "must be an ISO-4217 code such as USD"))
            elif price is not None:
                violations += fiat_violations(price, currency, config.max_price)
        case "asset_amount":
            try:
                amount = parse_base_units(request.asset_amount)
            except AmountError as exc:
                violations.append(("asset_amount", str(exc)))
        case _:
            assert_never(which)
    ttl_s = request.ttl_seconds or config.default_ttl_s
    if ttl_s > config.max_ttl_s:
        violations.append(("ttl_seconds", f"must be at most {config.max_ttl_s}"))
    if len(request.metadata) > MAX_METADATA_KEYS:
        violations.append(("metadata", f"at most {MAX_METADATA_KEYS} entries"))
    for key, value in request.metadata.items():
        if not key or len(key) > 64 or len(value) > MAX_METADATA_VALUE_LEN:
            violations.append(
                (f"metadata[{prefix(key)!r}]", "keys 1-64 characters, values at most 500")
            )
    if violations or asset is None:
        return None, violations
    spec = InvoiceSpec(
        merchant,
        order_id,
        asset,
        ttl_s,
        dict(request.metadata),
        request_id,
        price,
        currency,
        amount,
    )
    return spec, []


def invoice_filter(request: pb.ListInvoicesRequest, violations: Violations) -> InvoiceFilter:
    states = []
    for i, state in enumerate(request.states):
        name = pb.InvoiceState.Name(state) if state in pb.InvoiceState.values() else ""
        if not name or state == pb.INVOICE_STATE_UNSPECIFIED:
            violations.append((f"states[{i}]", "unknown invoice state"))
        else:
            states.append(name.removeprefix("INVOICE_STATE_").lower())
    flags = []
    for i, flag in enumerate(request.flags):
        name = pb.InvoiceFlag.Name(flag) if flag in pb.InvoiceFlag.values() else ""
        if not name or flag == pb.INVOICE_FLAG_UNSPECIFIED:
            violations.append((f"flags[{i}]", "unknown invoice flag"))
        else:
            flags.append(name.removeprefix("INVOICE_FLAG_").lower())
    start = (
        request.create_time_start.ToDatetime(UTC) if request.HasField("create_time_start") else None
    )
    end = request.create_time_end.ToDatetime(UTC) if request.HasField("create_time_end") else None
    if start is not None and end is not None and end <= start:
        violations.append(("create_time_end", "must be after create_time_start"))
    return InvoiceFilter(
        tuple(sorted(states)),
        tuple(sorted(flags)),
        request.asset.lower(),
        request.merchant_order_id,
        start,
        end,
    )


def page_size(requested: int) -> int:
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(create_time: datetime, row_id: str, binding: str) -> str:
    """A token for the position after (create_time, row_id), sealed (page_tokens.py)."""
    # Exact integer microseconds: a float round trip could skip or repeat rows.
    micros = (create_time - _EPOCH) // timedelta(microseconds=1)
    return page_tokens.seal(f"{micros}:{row_id}", binding)


def decode_page_token(token: str, binding: str) -> tuple[datetime, str] | None:
    """The position a token names, or None if it is forged, another caller's or for other filters."""
    position = page_tokens.open_token(token, binding)
    if position is None:
        return None
    micros_text, _, row_id = position.partition(":")
    try:
        micros = int(micros_text)
        return _EPOCH + timedelta(microseconds=micros), row_id
    except (ValueError, OverflowError):
        return None
