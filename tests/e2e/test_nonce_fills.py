"""Nonce gaps no payout fills, end to end on anvil (issue 19, "no later payout is blocked
by a gap").

The gap is made as it happens in the field: a payout is broadcast, then a transaction of
the hot key that Kassa did not make takes its nonce (anvil lets the test send as the hot
address; in production: the key used elsewhere, or a node that saw another transaction),
so the payout fails for good (NONCE_CONSUMED); then a reorg removes that transaction. The
nonce is missing on chain again, no payout of Kassa's will ever send it, and the payout
after it waits. Kassa fills it — after the chain's `nonce_fill_after_s`, never before —
with a 0-value transaction of the hot key to itself, signed under the signer's NONCE_FILL
purpose, and the waiting payout confirms. A gap that closes by itself within the wait gets
no fill. Blocks are mined by the test (automine off while it builds the gap)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from kassa.core.v1 import payout_pb2
from localstack.fullstack import LocalStack
from tests.support.metrics import scrape, value
from tests.support.payouts import (
    fresh_address,
    hot_nonce,
    ledger_check,
    paid_invoice,
    wait_payout,
)

FILL_AFTER_S = 6
BROADCAST = {payout_pb2.PAYOUT_STATE_BROADCAST}
CONFIRMED = {payout_pb2.PAYOUT_STATE_CONFIRMED}
FAILED = {payout_pb2.PAYOUT_STATE_FAILED}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[LocalStack]:
    local = LocalStack(
        Path(tmp_path_factory.mktemp("nonce-fills")),
        block_time_s=None,
        postgres=postgres,
        core_options={"chain_extra": {"nonce_fill_after_s": FILL_AFTER_S}},  # type: ignore[dict-item]
    )
    local.start_all()
    yield local
    codes = local.stop()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def _db(stack: LocalStack, sql: str, *args: object) -> list[Any]:
    async def read() -> list[Any]:
        conn = await asyncpg.connect(stack.dsn)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(read())


def _fills(stack: LocalStack, nonce: int) -> list[dict[str, Any]]:
    return _db(
        stack,
        """SELECT p.*, t.tx_hash FROM payouts p
             LEFT JOIN payout_transactions t ON t.payout_id = p.id
            WHERE p.kind = 'nonce_fill' AND p.nonce = $1 ORDER BY p.create_time""",
        nonce,
    )


def _log(stack: LocalStack, message: str, nonce: int) -> list[dict[str, Any]]:
    """The core's JSON log lines with `message` about `nonce`."""
    lines = (stack.run_dir / "core.log").read_text(errors="replace").splitlines()
    out = []
    for line in lines:
        if message not in line:
            continue
        record = json.loads(line)
        if record.get("nonce") == nonce:
            out.append(record)
    return out


def _wait_log(stack: LocalStack, message: str, nonce: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not (found := _log(stack, message, nonce)):
        assert time.monotonic() < deadline, f"the core never logged {message!r} for {nonce}"
        time.sleep(0.2)
    return found[0]


@contextmanager
def manual_mining(stack: LocalStack) -> Iterator[None]:
    stack.anvil.rpc("evm_setAutomine", False)
    try:
        yield
    finally:
        stack.anvil.rpc("evm_setAutomine", True)


def _outsider_takes(stack: LocalStack, nonce: int) -> str:
    """A transaction of the hot key Kassa did not make: 0 to itself at `nonce`."""
    hot = stack.hot_address
    stack.anvil.rpc("anvil_impersonateAccount", hot)
    try:
        return str(
            stack.anvil.rpc(
                "eth_sendTransaction",
                {"from": hot, "to": hot, "value": "0x0", "nonce": hex(nonce), "gas": hex(21_000)},
            )
        )
    finally:
        stack.anvil.rpc("anvil_stopImpersonatingAccount", hot)


def _payout(
    stack: LocalStack, payouts, parent: str, to: str, amount: int, reference: str
) -> payout_pb2.Payout:
    return payouts.CreatePayout(
        payout_pb2.CreatePayoutRequest(
            parent=parent,
            payout=payout_pb2.Payout(
                asset=stack.token_asset, destination=to, amount=str(amount), reference=reference
            ),
        )
    ).payout


def _gap_no_payout_will_fill(stack: LocalStack, parent: str, payouts) -> int:
    """Leaves the hot key's next nonce on chain missing, its payout failed for good; returns
    that nonce. Call with automine off."""
    nonce = hot_nonce(stack)
    lost = _payout(stack, payouts, parent, fresh_address(), 1_000_000, "lost")
    wait_payout(stack, payouts, lost.name, BROADCAST, mine=False)
    (candidate,) = _db(
        stack,
        "SELECT tx_hash, nonce FROM payout_transactions WHERE payout_id = $1",
        lost.name.rsplit("/", 1)[1],
    )
    assert int(candidate["nonce"]) == nonce
    # Another transaction of the key takes the nonce and is mined.
    stack.anvil.rpc("anvil_dropTransaction", candidate["tx_hash"])
    outsider = _outsider_takes(stack, nonce)
    stack.anvil.mine(1)
    receipt = stack.anvil.rpc("eth_getTransactionReceipt", outsider)
    assert receipt is not None and hot_nonce(stack) == nonce + 1
    failed = wait_payout(stack, payouts, lost.name, FAILED, mine=False)
    assert failed.failure_reason == "NONCE_CONSUMED"
    # A reorg removes the outsider's transaction: the nonce is missing again.
    depth = stack.anvil.head() - int(receipt["blockNumber"], 16) + 1
    stack.anvil.rpc("anvil_reorg", depth, [])
    assert stack.anvil.rpc("eth_getTransactionReceipt", outsider) is None
    assert hot_nonce(stack) == nonce
    return nonce


def test_a_gap_no_payout_fills_is_filled_after_the_wait_and_the_next_payout_confirms(
    stack: LocalStack, account
) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)  # 25 TUSD for the merchant
    to = fresh_address()
    with manual_mining(stack):
        nonce = _gap_no_payout_will_fill(stack, parent, payouts)
        waiting = _payout(stack, payouts, parent, to, 2_000_000, "after the gap")
        broadcast = wait_payout(stack, payouts, waiting.name, BROADCAST, mine=False)
        assert broadcast.nonce == nonce + 1
        # Blocks come and go: the payout cannot be mined behind the missing nonce.
        stack.anvil.mine(2)
        assert hot_nonce(stack) == nonce and stack.token.balance_of(to) == 0
        seen = _wait_log(stack, "nonce gap no payout holds", nonce, 15)
        assert seen["fill_after_s"] == FILL_AFTER_S and seen["chain"] == stack.chain
        filled = _wait_log(stack, "nonce gap filled", nonce, FILL_AFTER_S + 20)
        # Never before the wait: a gap that closes by itself is not filled.
        assert filled["waited_s"] >= FILL_AFTER_S
        done = wait_payout(stack, payouts, waiting.name, CONFIRMED)
    assert done.nonce == nonce + 1 and stack.token.balance_of(to) == 2_000_000
    stack.anvil.mine(2)
    assert hot_nonce(stack) == nonce + 2

    # One fill for the nonce: the hot key to itself, value 0, no data, confirmed.
    deadline = time.monotonic() + 20
    while (fills := _fills(stack, nonce))[0]["state"] != "confirmed":
        assert time.monotonic() < deadline, fills
        time.sleep(0.2)
    assert len(fills) == 1 and fills[0]["id"] == filled["payout"]
    fill = fills[0]
    tx = stack.anvil.rpc("eth_getTransactionByHash", fill["tx_hash"])
    hot = stack.hot_address.lower()
    assert (tx["from"].lower(), tx["to"].lower(), int(tx["value"], 16), tx["input"]) == (
        hot,
        hot,
        0,
        "0x",
    )
    assert int(tx["nonce"], 16) == nonce
    # Only its fee is booked, as any payout's gas: network fees <- the hot key.
    receipt = stack.anvil.rpc("eth_getTransactionReceipt", fill["tx_hash"])
    fee_wei = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    booked = _db(
        stack, "SELECT * FROM ledger_transfers WHERE reference = $1", f"sweeps/{fill['id']}"
    )
    assert [(t["id"], int(t["amount"])) for t in booked] == [(f"payout:{fill['id']}:fee", fee_wei)]
    native = f"{stack.chain}/slip44:60"
    assert (booked[0]["debit_account_id"], booked[0]["credit_account_id"]) == (
        f"platform:network_fees:{native}",
        f"platform:custody:{native}:hot",
    )
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr
    # The gauge of payouts by kind and state shows it.
    deadline = time.monotonic() + 15
    port = stack.core_setup().metrics_port
    while value(scrape(port), "kassa_payouts", kind="nonce_fill", state="confirmed") < 1:
        assert time.monotonic() < deadline, "no kassa_payouts{kind=nonce_fill,state=confirmed}"
        time.sleep(0.5)


def test_a_gap_that_closes_before_the_wait_gets_no_fill(stack: LocalStack, account) -> None:
    parent, invoices, payouts = account
    paid_invoice(stack, invoices, parent)
    to = fresh_address()
    with manual_mining(stack):
        nonce = _gap_no_payout_will_fill(stack, parent, payouts)
        waiting = _payout(stack, payouts, parent, to, 2_000_000, "after a short gap")
        wait_payout(stack, payouts, waiting.name, BROADCAST, mine=False)
        _wait_log(stack, "nonce gap no payout holds", nonce, 15)
        seen_at = time.monotonic()
        # The key's other user sends its transaction again: the gap closes by itself.
        _outsider_takes(stack, nonce)
        done = wait_payout(stack, payouts, waiting.name, CONFIRMED)
    assert done.nonce == nonce + 1 and stack.token.balance_of(to) == 2_000_000
    # Past the wait (and a margin for the worker's passes): no fill was ever made.
    time.sleep(max(0.0, seen_at + FILL_AFTER_S + 3 - time.monotonic()))
    assert _fills(stack, nonce) == []
    assert _log(stack, "nonce gap filled", nonce) == []
    assert hot_nonce(stack) == nonce + 2
    check = ledger_check(stack)
    assert check.returncode == 0, check.stdout + check.stderr
