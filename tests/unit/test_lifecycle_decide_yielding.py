"""The block applier decides its invoices in slices (`lifecycle.decide_yielding`)
while the ledger's statements run, from views of the locked rows it made while
the payments were inserted (`lifecycle.as_domain_yielding`). Both must give
what the one pure decider gives row by row, and give the loop its turns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.invoices import lifecycle
from core.invoices import state as sm

_EXPIRE = datetime(2026, 11, 30, 12, tzinfo=UTC)


@st.composite
def invoice_rows(draw: st.DrawFn, invoice_id: str) -> dict[str, Any]:
    """An invoice row as the block's lock reads it (the columns as_domain reads)."""
    due = draw(st.integers(1, 10**30))
    mempool = draw(st.integers(0, 10**30))
    confirming = draw(st.integers(0, 10**30))
    received = draw(st.integers(0, 10**30))
    late = draw(st.integers(0, mempool + confirming + received))
    return {
        "id": invoice_id,
        "state": draw(st.sampled_from([s.value for s in sm.State])),
        "amount_due": due,
        "expire_time": _EXPIRE,
        "underpayment_tolerance": draw(st.integers(0, due - 1)),
        "amount_mempool": mempool,
        "amount_pending": mempool + confirming,
        "amount_received": received,
        "amount_late": late,
        "wrong_asset_transfers": draw(st.integers(0, 3)),
        "amount_outside": draw(st.integers(0, late)),
        "flags": sorted(draw(st.sets(st.sampled_from([f.value for f in sm.Flag])))),
        "amount_refunded": draw(st.integers(0, received)),
    }


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, sm.Funds], set[str]]:
    """Rows (in id order, as locked), the funds each now observes, and the ids
    whose views were made ahead."""
    n = draw(st.integers(0, 200))
    rows = [draw(invoice_rows(f"inv{i:04d}")) for i in range(n)]
    funds: dict[str, sm.Funds] = {}
    for row in rows:
        late = draw(st.integers(0, 2 * row["amount_due"]))
        funds[row["id"]] = sm.Funds(
            pending=draw(st.integers(0, row["amount_due"])),
            confirming=draw(st.integers(0, row["amount_due"])),
            confirmed=draw(st.integers(0, row["amount_due"])) + late,
            late=late,
            wrong_asset_transfers=draw(st.integers(0, 2)),
            outside=draw(st.integers(0, late)),
        )
    ahead = draw(st.sets(st.sampled_from([r["id"] for r in rows]))) if rows else set()
    return rows, funds, ahead


def _decided_one_by_one(
    rows: list[dict[str, Any]], funds: dict[str, sm.Funds]
) -> dict[str, sm.Decision]:
    return {
        r["id"]: sm.decide(lifecycle.as_domain(r), sm.FundsObserved(funds[r["id"]])) for r in rows
    }


@settings(max_examples=40, deadline=None)
@given(blocks())
def test_decided_in_slices_as_one_by_one_with_or_without_views_made_ahead(
    block: tuple[list[dict[str, Any]], dict[str, sm.Funds], set[str]],
) -> None:
    valid, funds, ahead = block

    async def decided() -> tuple[dict[str, sm.Invoice], lifecycle.Decided]:
        views = await lifecycle.as_domain_yielding([r for r in valid if r["id"] in ahead])
        return views, await lifecycle.decide_yielding(
            valid,
            lambda r: sm.FundsObserved(funds[r["id"]]),
            views,
        )

    views, got = asyncio.run(decided())
    expected = _decided_one_by_one(valid, funds)
    assert got.decisions == expected
    assert list(got.decisions) == [r["id"] for r in valid]  # the rows' order kept
    assert got.before == {r["id"]: lifecycle.as_domain(r) for r in valid}
    assert got.events == {r["id"]: sm.FundsObserved(funds[r["id"]]) for r in valid}
    # The views made ahead are the ones decided from (not made again).
    assert all(got.before[i] is views[i] for i in views)


def test_the_loop_gets_a_turn_every_slice_while_deciding() -> None:
    """What lets the ledger's statements (and the payments INSERT) proceed on
    the connection while the client decides: another task runs between slices."""
    due = 25_000_000
    rows = [
        {
            "id": f"inv{i:05d}",
            "state": "awaiting_payment",
            "amount_due": due,
            "expire_time": _EXPIRE + timedelta(hours=1),
            "underpayment_tolerance": 0,
            "amount_mempool": 0,
            "amount_pending": 0,
            "amount_received": 0,
            "amount_late": 0,
            "wrong_asset_transfers": 0,
            "amount_outside": 0,
            "flags": [],
            "amount_refunded": 0,
        }
        for i in range(5 * 128)
    ]
    paid = sm.FundsObserved(sm.Funds(confirming=due))

    async def counted_turns() -> tuple[int, int, lifecycle.Decided]:
        turns = 0
        stop = asyncio.Event()

        async def other() -> None:
            nonlocal turns
            while not stop.is_set():
                turns += 1
                await asyncio.sleep(0)

        beside = asyncio.ensure_future(other())
        await asyncio.sleep(0)
        start = turns
        views = await lifecycle.as_domain_yielding(rows)
        viewed = turns - start
        decided = await lifecycle.decide_yielding(rows, lambda r: paid, views)
        stop.set()
        await beside
        return viewed, turns - start - viewed, decided

    viewed, deciding, decided = asyncio.run(counted_turns())
    assert viewed >= 4 and deciding >= 4, (viewed, deciding)
    assert all(d.invoice.state is sm.State.CONFIRMING for d in decided.decisions.values())
    assert all(
        [s.event_type for s in d.steps] == ["invoice.detected", "invoice.confirming"]
        for d in decided.decisions.values()
    )
