"""Every ErrorInfo.reason the core's API can return, in one place.

docs/api.md lists the same set ("Error reasons"); tests/unit/test_reasons.py
checks both ways that the list and this module agree, and that the code
raises no reason this module does not name.
"""

from __future__ import annotations

# -- invoices -----------------------------------------------------------------
INVOICE_NOT_CANCELLABLE = "INVOICE_NOT_CANCELLABLE"
INVOICE_CLOSED = "INVOICE_CLOSED"
INVOICE_HAS_FUNDS = "INVOICE_HAS_FUNDS"
MARK_STATE_INVALID = "MARK_STATE_INVALID"
NO_RATE = "NO_RATE"
# -- refunds ------------------------------------------------------------------
INVOICE_NOT_REFUNDABLE = "INVOICE_NOT_REFUNDABLE"
REFUND_EXCEEDS_RECEIVED = "REFUND_EXCEEDS_RECEIVED"
# -- every write --------------------------------------------------------------
INVALID_ARGUMENT = "INVALID_ARGUMENT"
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
