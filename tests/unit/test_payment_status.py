"""PaymentStatus: which statuses add to an invoice's funds."""

from __future__ import annotations

import pytest

from core.payments.status import PaymentStatus, counts


@pytest.mark.parametrize(
    ("status", "counted"),
    [
        (PaymentStatus.PENDING, True),
        (PaymentStatus.CONFIRMING, True),
        (PaymentStatus.CONFIRMED, True),
        (PaymentStatus.REORGED, False),
    ],
)
def test_counts_table(status: PaymentStatus, counted: bool) -> None:
    assert counts(status) is counted


def test_statuses_are_the_strings_the_table_stores() -> None:
    assert {s.value for s in PaymentStatus} == {"pending", "confirming", "confirmed", "reorged"}
    assert PaymentStatus("confirmed") is PaymentStatus.CONFIRMED
