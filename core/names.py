"""Resource names (AIP-122): the one place that formats and parses them.

`merchants/{m}`, `merchants/{m}/invoices/{i}`, `merchants/{m}/payouts/{p}`,
`merchants/{m}/apiKeys/{k}`, `merchants/{m}/webhookEndpoints/{e}` (and its
`/deliveries/{d}`), `sweeps/{s}`. Parsers return None for anything else
and use `fullmatch`: `$` would let a trailing newline through. Pure: no I/O.
"""

from __future__ import annotations

import re

_M = r"[a-z0-9][a-z0-9-]{0,62}"  # a merchant id
_ID = r"[a-z0-9]{1,40}"  # invoice, payout and sweep ids
_KEY = r"[0-9a-f]{16}"  # API key and webhook endpoint ids

_MERCHANT_ID = re.compile(_M)
_MERCHANT = re.compile(rf"merchants/({_M})")
_INVOICE = re.compile(rf"merchants/({_M})/invoices/({_ID})")
_PAYOUT = re.compile(rf"merchants/({_M})/payouts/({_ID})")
_API_KEY = re.compile(rf"merchants/({_M})/apiKeys/({_KEY})")
_ENDPOINT = re.compile(rf"merchants/({_M})/webhookEndpoints/({_KEY})")
_ANY_ENDPOINT = re.compile(rf"merchants/({_M})/webhookEndpoints/(-|{_KEY})")
_DELIVERY = re.compile(rf"merchants/({_M})/webhookEndpoints/({_KEY})/deliveries/([0-9a-f-]{{36}})")
_SWEEP = re.compile(rf"sweeps/({_ID})")
# A client's idempotency key (AIP-155).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_merchant_id(text: str) -> bool:
    return _MERCHANT_ID.fullmatch(text) is not None


def is_request_id(text: str) -> bool:
    return _REQUEST_ID.fullmatch(text) is not None


def merchant(merchant_id: str) -> str:
    return f"merchants/{merchant_id}"


def invoice(merchant_id: str, invoice_id: str) -> str:
    return f"merchants/{merchant_id}/invoices/{invoice_id}"


def payout(merchant_id: str, payout_id: str) -> str:
    return f"merchants/{merchant_id}/payouts/{payout_id}"


def api_key(merchant_id: str, key_id: str) -> str:
    return f"merchants/{merchant_id}/apiKeys/{key_id}"


def webhook_endpoint(merchant_id: str, endpoint_id: str) -> str:
    return f"merchants/{merchant_id}/webhookEndpoints/{endpoint_id}"


def sweep(sweep_id: str) -> str:
    return f"sweeps/{sweep_id}"


def parse_merchant(name: str) -> str | None:
    match = _MERCHANT.fullmatch(name)
    return match.group(1) if match else None


def parse_invoice(name: str) -> tuple[str, str] | None:
    """(merchant id, invoice id)."""
    match = _INVOICE.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def parse_payout(name: str) -> tuple[str, str] | None:
    """(merchant id, payout id)."""
    match = _PAYOUT.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def parse_api_key(name: str) -> tuple[str, str] | None:
    """(merchant id, key id)."""
    match = _API_KEY.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def parse_webhook_endpoint(name: str, allow_any: bool = False) -> tuple[str, str] | None:
    """(merchant id, endpoint id); with `allow_any` the id may be `-` (every endpoint)."""
    match = (_ANY_ENDPOINT if allow_any else _ENDPOINT).fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def parse_delivery(name: str) -> tuple[str, str, str] | None:
    """(merchant id, endpoint id, delivery id)."""
    match = _DELIVERY.fullmatch(name)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def parse_sweep(name: str) -> str | None:
    match = _SWEEP.fullmatch(name)
    return match.group(1) if match else None
