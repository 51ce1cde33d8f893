"""What a validated request asks of the invoices area: a new invoice, a listing filter.

Built by core/api/validate.py from a request, read by core/invoices/invoicing.py; kept
below the API so that logic never imports the edge.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.domain.assets import Asset


@dataclass(frozen=True)
class InvoiceSpec:
    merchant_id: str
    merchant_order_id: str
    asset: Asset
    ttl_s: int
    metadata: dict[str, str]
    request_id: str | None
    price: Decimal | None = None
    currency: str | None = None
    asset_amount: int | None = None


@dataclass(frozen=True)
class InvoiceFilter:
    states: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    asset: str = ""
    merchant_order_id: str = ""
    create_time_start: datetime | None = None
    create_time_end: datetime | None = None

    def digest(self) -> str:
        """Binds a page token to the filters it was issued for."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]
