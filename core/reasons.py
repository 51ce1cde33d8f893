"""Every ErrorInfo.reason the core's API can return, in one place.

docs/api.md ("Errors") lists the same set; tests/unit/test_reasons.py checks
both ways that the list and this module agree, and follows every reason the
code hands to an error (Refusal and the helpers that pass a reason on) to
check that the code returns none this module does not name and that each one
named here is returned somewhere. New code uses these constants.
"""

from __future__ import annotations

# -- every call ----------------------------------------------------------------------
INVALID_ARGUMENT = "INVALID_ARGUMENT"  # field violations in a BadRequest
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"  # a request_id again, with another body
CREDENTIALS_MISSING = "CREDENTIALS_MISSING"
CREDENTIALS_INVALID = "CREDENTIALS_INVALID"
CREDENTIALS_REVOKED = "CREDENTIALS_REVOKED"
SCOPE_MISSING = "SCOPE_MISSING"
MERCHANT_FORBIDDEN = "MERCHANT_FORBIDDEN"
MESSAGE_UNDECODABLE = "MESSAGE_UNDECODABLE"  # bytes that are not the request message
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # UNAVAILABLE with RetryInfo: retry later
INTERNAL_ERROR = (
    "INTERNAL_ERROR"  # anything unexpected; metadata `incident`, logged with the details
)
# -- not found (what is named in metadata `name`) -------------------------------------
INVOICE_NOT_FOUND = "INVOICE_NOT_FOUND"
MERCHANT_NOT_FOUND = "MERCHANT_NOT_FOUND"
API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
PAYOUT_NOT_FOUND = "PAYOUT_NOT_FOUND"
SWEEP_NOT_FOUND = "SWEEP_NOT_FOUND"
WEBHOOK_ENDPOINT_NOT_FOUND = "WEBHOOK_ENDPOINT_NOT_FOUND"
WEBHOOK_DELIVERY_NOT_FOUND = "WEBHOOK_DELIVERY_NOT_FOUND"
EVENT_NOT_FOUND = "EVENT_NOT_FOUND"
ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"  # a ledger account (domain kassa.ledger)
# -- invoices ------------------------------------------------------------------------
NO_RATE = "NO_RATE"
INVOICE_NOT_CANCELLABLE = "INVOICE_NOT_CANCELLABLE"
INVOICE_CLOSED = "INVOICE_CLOSED"
INVOICE_HAS_FUNDS = "INVOICE_HAS_FUNDS"
MARK_STATE_INVALID = "MARK_STATE_INVALID"
# -- refunds and payouts -------------------------------------------------------------
INVOICE_NOT_REFUNDABLE = "INVOICE_NOT_REFUNDABLE"
REFUND_EXCEEDS_RECEIVED = "REFUND_EXCEEDS_RECEIVED"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
PAYOUT_NOT_CANCELLABLE = "PAYOUT_NOT_CANCELLABLE"
PAYOUT_NOT_WAITING = "PAYOUT_NOT_WAITING"
SIGN_REQUEST_CHANGED = "SIGN_REQUEST_CHANGED"
DESTINATION_REFUSED = "DESTINATION_REFUSED"  # a token contract or one of our own addresses
# -- merchants and events ------------------------------------------------------------
MERCHANT_EXISTS = "MERCHANT_EXISTS"
CONSUMER_TOO_SLOW = "CONSUMER_TOO_SLOW"
# -- reconciliation and the exception queue --------------------------------------------
RECONCILIATION_NOT_FOUND = "RECONCILIATION_NOT_FOUND"
NOT_RECONCILABLE = "NOT_RECONCILABLE"  # the chain has no settled height to read yet
DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"  # the adapter (or signer) did not answer
NOT_LEADER = "NOT_LEADER"  # an on-demand run asked of a replica that does not lead its role
# -- health ----------------------------------------------------------------------------
CHAIN_UNAVAILABLE = "CHAIN_UNAVAILABLE"  # CreateInvoice on a chain the core does not follow now
EXCEPTION_NOT_FOUND = "EXCEPTION_NOT_FOUND"
EXCEPTION_ALREADY_RESOLVED = "EXCEPTION_ALREADY_RESOLVED"
EXCEPTION_NOT_REBASELINABLE = "EXCEPTION_NOT_REBASELINABLE"
# -- support actions (core/support) ----------------------------------------------------
SUPPORT_ACTION_NOT_FOUND = "SUPPORT_ACTION_NOT_FOUND"
SUPPORT_ACTION_NOT_APPLICABLE = "SUPPORT_ACTION_NOT_APPLICABLE"  # the subject does not offer it now
SUPPORT_APPROVER_IS_REQUESTER = "SUPPORT_APPROVER_IS_REQUESTER"  # a second, different operator
SUPPORT_ACTION_NOT_PENDING = "SUPPORT_ACTION_NOT_PENDING"  # done, rejected or withdrawn already
REBASELINE_NEEDS_APPROVAL = "REBASELINE_NEEDS_APPROVAL"  # through SupportService.Rebaseline
