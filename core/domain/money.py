"""Amounts: parsing decimal strings and converting fiat prices to base units.

Money is integers in base units everywhere; Decimal appears only while a fiat
price is converted at a quoted rate, and the result is rounded up so that an
invoice never asks for less than its price.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, localcontext

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
