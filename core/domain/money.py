"""Amounts: parsing decimal strings and converting fiat prices to base units.

Money is integers in base units everywhere; Decimal appears only while a fiat
price is converted at a quoted rate, and the result is rounded up so that an
invoice never asks for less than its price.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, localcontext

from iso4217 import Currency

MAX_UINT256 = 2**256 - 1
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,59})(\.[0-9]{1,18})?")
_INTEGER = re.compile(r"(0|[1-9][0-9]{0,77})")


class AmountError(ValueError):
    """An amount string is not acceptable; the message says why."""


def parse_base_units(text: str) -> int:
    """A positive integer amount in base units, as sent on the wire."""
    if not _INTEGER.fullmatch(text):
        raise AmountError('must be a positive whole number of base units, e.g. "25000000"')
    value = int(text)
    if value <= 0:
        raise AmountError("must be greater than zero")
    if value > MAX_UINT256:
        raise AmountError("exceeds 2^256 - 1")
    return value


def parse_decimal(text: str) -> Decimal:
    """A positive decimal such as a fiat price or a rate, e.g. "25.00"."""
    if not _DECIMAL.fullmatch(text):
        raise AmountError('must be a positive decimal number such as "25.00"')
    value = Decimal(text)
    if value <= 0:
        raise AmountError("must be greater than zero")
    return value


def fiat_to_base_units(price: Decimal, rate: Decimal, decimals: int) -> int:
    """Base units due for `price` at `rate` (fiat per whole unit), rounded up."""
    assert price > 0 and rate > 0 and 0 <= decimals <= 36
    with localcontext() as ctx:
        ctx.prec = 120
        units = (price / rate) * (Decimal(10) ** decimals)
        due = int(units.to_integral_value(rounding=ROUND_CEILING))
    assert due >= 1
    return due


def minor_units(currency: str) -> int | None:
    """The ISO-4217 minor units (decimal places) of `currency`; None for a code
    that is not ISO-4217 or has no minor unit (gold, testing codes): no price
    is quoted in those. The table is the iso4217 package's (ISO's own list)."""
    try:
        exponent = Currency(currency).exponent
    except ValueError:
        return None
    return exponent


def fiat_violations(price: Decimal, currency: str, max_price: Decimal) -> list[tuple[str, str]]:
    """What is wrong with a fiat price, as (field, description) pairs.

    A price finer than the currency's minor unit (25.0000000001 USD) cannot be
    paid or refunded in that currency; one above the configured maximum (10^40
    USD) is a bug or an attack on the rate arithmetic, never an order.
    """
    assert price > 0 and max_price > 0, (price, max_price)
    digits = minor_units(currency)
    if digits is None:
        return [("price.currency", f"{currency!r} is not an ISO-4217 currency with minor units")]
    violations = []
    if _decimal_places(price) > digits:
        violations.append(
            ("price.amount", f"{currency} has {digits} decimal places; {price} has more")
        )
    if price > max_price:
        violations.append(("price.amount", f"must be at most {max_price} {currency}"))
    return violations


def _decimal_places(value: Decimal) -> int:
    """Significant decimal places of `value` (25.100 has 1). Read off the digits:
    Decimal.normalize rounds to the context's precision (28 digits), which
    would hide the .001 of 10^40 + 0.001."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int), value  # parse_decimal admits finite numbers only
    trailing = len(digits) - len(bytes(digits).rstrip(b"\x00"))
    return max(-(exponent + trailing), 0)
