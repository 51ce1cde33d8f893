"""The chart of accounts: every ledger account the core opens, its id and code.

Accounts are per asset (CAIP-19, so per chain) and created on first use:

  platform:custody:{asset}              1001  what the deposit addresses hold
  platform:fees:{asset}                 1002
  platform:network_fees:{asset}         1003  gas the platform paid
  platform:custody:{asset}:treasury     1004  swept to the chain's treasury
  platform:custody:{asset}:hot          1005  the hot key; negative while it
                                              spends a float funded outside the ledger
  merchant:{m}:{asset}:available        2001
  merchant:{m}:{asset}:incoming         2002  detected and confirmed payments
  merchant:{m}:{asset}:refunds_payable  2003  overpaid excess a refund will debit
  merchant:{m}:{asset}:payouts_in_flight 2004 held for payouts being sent
  merchant:{m}:{asset}:receivable       2005  owed by the merchant: funds a reorg took
                                              back after they were refunded or paid out
                                              (core/ledger/settlement.py)

Custody by location (deposit addresses, treasury, hot key) together is what
the platform holds. Transfer codes: 1 payment, 2 reversal, 3 settlement,
4 payout, 5 network fee, 6 sweep, 7 gas funding.

A new account kind is one line here and one in docs/ledger.md. Pure: no I/O.
"""

from __future__ import annotations

from core.ledger.rules import Account, AccountFlags

# Account codes.
CUSTODY, FEES, NETWORK_FEES, TREASURY, HOT = 1001, 1002, 1003, 1004, 1005
AVAILABLE, INCOMING, REFUNDS_PAYABLE, IN_FLIGHT, RECEIVABLE = 2001, 2002, 2003, 2004, 2005
MERCHANT_KINDS = {
    "available": AVAILABLE,
    "incoming": INCOMING,
    "refunds_payable": REFUNDS_PAYABLE,
    "payouts_in_flight": IN_FLIGHT,
    "receivable": RECEIVABLE,
}


def custody(asset: str) -> str:
    return f"platform:custody:{asset}"


def fees(asset: str) -> str:
    return f"platform:fees:{asset}"


def network_fees(asset: str) -> str:
    return f"platform:network_fees:{asset}"


def treasury(asset: str) -> str:
    return f"{custody(asset)}:treasury"


def hot(asset: str) -> str:
    return f"{custody(asset)}:hot"


def merchant_account(merchant_id: str, asset: str, kind: str) -> str:
    assert kind in MERCHANT_KINDS, kind
    return f"merchant:{merchant_id}:{asset}:{kind}"


def in_flight(merchant_id: str, asset: str) -> str:
    return merchant_account(merchant_id, asset, "payouts_in_flight")


# What Kassa owes a merchant is never negative, nor is what it spent on gas or
# what a merchant owes it: these accounts carry the flag that enforces it.
# `incoming` too: a reorg posts the settlement's reversal (which refills it,
# from the receivable where the funds are gone) before the payment's reversal
# (core/chain/apply.py). `kassactl ledger check` names any account whose
# balance stays against its nature, flag or not (core/ledger/check.py).
NEVER_NEGATIVE = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
EXPENSE = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
DEBIT_NORMAL = EXPENSE  # what is owed to the platform: never more paid back than owed


def platform_accounts(asset: str) -> list[Account]:
    return [
        Account(custody(asset), asset, CUSTODY),
        Account(fees(asset), asset, FEES),
        Account(network_fees(asset), asset, NETWORK_FEES, EXPENSE),
    ]


def location_accounts(asset: str) -> list[Account]:
    return [Account(treasury(asset), asset, TREASURY), Account(hot(asset), asset, HOT)]


def receivable(merchant_id: str, asset: str) -> str:
    return merchant_account(merchant_id, asset, "receivable")


def merchant_accounts(merchant_id: str, asset: str) -> list[Account]:
    """The accounts a payment needs (payouts_in_flight is opened by payouts)."""
    return [
        Account(merchant_account(merchant_id, asset, kind), asset, code, flags)
        for kind, code, flags in (
            ("available", AVAILABLE, NEVER_NEGATIVE),
            ("incoming", INCOMING, NEVER_NEGATIVE),
            ("receivable", RECEIVABLE, DEBIT_NORMAL),
            ("refunds_payable", REFUNDS_PAYABLE, NEVER_NEGATIVE),
        )
    ]
