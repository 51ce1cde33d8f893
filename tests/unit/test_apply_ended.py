"""The block applier runs statements beside its own Python (the payments
INSERT beside the decider's views, the ledger beside the decisions) and waits
for them however its own work ends (`core.chain.apply._ended`)."""

from __future__ import annotations

import asyncio

import pytest

from core.chain.apply import _ended


def test_waits_for_the_statements_when_the_callers_work_failed() -> None:
    ran: list[str] = []

    async def statements() -> None:
        await asyncio.sleep(0.01)
        ran.append("ended")

    async def block() -> None:
        beside = asyncio.ensure_future(statements())
        try:
            raise AssertionError("the decider's own error")
        finally:
            await _ended(beside)

    with pytest.raises(AssertionError, match="the decider's own error"):
        asyncio.run(block())
    assert ran == ["ended"]  # the connection was theirs until they ended


def test_their_failure_is_raised_by_result_and_never_left_unretrieved() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("ledger refused")

    async def block() -> None:
        beside = asyncio.ensure_future(failing())
        await _ended(beside)
        assert beside.done()
        # Marked seen: no "exception was never retrieved" if the caller's own
        # error wins; raised when the caller asks for the result.
        assert beside._log_traceback is False
        beside.result()

    with pytest.raises(RuntimeError, match="ledger refused"):
        asyncio.run(block())


def test_cancelled_while_waiting_cancels_the_statements() -> None:
    async def block() -> asyncio.Future[None]:
        beside: asyncio.Future[None] = asyncio.ensure_future(asyncio.sleep(60))
        waiter = asyncio.ensure_future(_ended(beside))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0)
        return beside

    beside = asyncio.run(block())
    assert beside.cancelled()
