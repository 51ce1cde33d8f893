"""The COPY text rows the store streams into ledger_transfers: decoded the
way PostgreSQL reads FORMAT text, every row gives back exactly the transfer's
fields, whatever text its references, user data, ids and asset hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ledger.copy_rows import COLUMNS, RowEncoder
from core.ledger.rules import AMOUNT_MAX, Transfer

NOW = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)
_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def decode(data: bytes) -> list[dict[str, str | None]]:
    """FORMAT text as PostgreSQL reads it (the escapes the encoder may write)."""
    text = data.decode()
    assert text.endswith("\n") or not text
    rows = []
    for line in text.split("\n")[:-1]:
        fields = line.split("\t")
        assert len(fields) == len(COLUMNS), line
        values: list[str | None] = []
        for f in fields:
            if f == "\\N":
                values.append(None)
                continue
            out, i = [], 0
            while i < len(f):
                if f[i] == "\\":
                    out.append(_UNESCAPE[f[i + 1]])  # any other escape is the encoder's bug
                    i += 2
                else:
                    out.append(f[i])
                    i += 1
            values.append("".join(out))
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return rows


def expected(t: Transfer, now: datetime) -> dict[str, str | None]:
    return {
        "id": t.id,
        "debit_account_id": t.debit_account_id,
        "credit_account_id": t.credit_account_id,
        "amount": str(t.amount),
        "asset": t.asset,
        "code": str(t.code),
        "flags": str(t.flags),
        "timeout_s": str(t.timeout_s),
        "reference": t.reference,
        "user_data": t.user_data,
        "pending_id": t.pending_id or None,
        "create_time": now.isoformat(),
        "expire_time": (now + timedelta(seconds=t.timeout_s)).isoformat()
        if t.timeout_s > 0
        else None,
    }


# Any text without NUL (PostgreSQL's text refuses it, whichever way it is sent),
# with the characters COPY treats specially well represented.
texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\\", "\t", "\n", "\r", "N", ".", ",", '"', "é", "€", " "]),
        st.characters(codec="utf-8", exclude_characters="\x00"),
    ),
    max_size=12,
)


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    pending = draw(st.booleans())
    return Transfer(
        id=draw(texts.filter(bool)),
        debit_account_id=draw(texts),
        credit_account_id=draw(texts),
        amount=draw(st.integers(0, AMOUNT_MAX)),
        asset=draw(texts),
        code=draw(st.integers(0, 65535)),
        flags=draw(st.integers(0, 15)),
        pending_id=draw(texts) if pending else "",
        timeout_s=draw(st.sampled_from([0, 1, 30, 2**31 - 1])),
        reference=draw(texts),
        user_data=draw(texts),
    )


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(transfers(), max_size=6))
def test_every_row_decodes_to_its_transfer(batch: list[Transfer]) -> None:
    rows = decode(RowEncoder(NOW).encode(batch))
    assert rows == [expected(t, NOW) for t in batch]


def test_examples_of_what_needs_escaping() -> None:
    t = Transfer(
        "id\\N",
        "a",
        "b",
        5,
        "asset",
        1,
        2,
        timeout_s=60,
        reference="tab\there\nnew\\line\r",
        user_data="\\.",
    )
    data = RowEncoder(NOW).encode([t])
    assert data.count(b"\n") == 1  # one row: the value's newline was escaped
    assert b"id\\\\N\t" in data  # a literal backslash-N is not NULL
    assert b"tab\\there\\nnew\\\\line\\r" in data
    (row,) = decode(data)
    assert row == expected(t, NOW)
    assert row["pending_id"] is None and row["expire_time"] == "2026-11-30T08:01:00.123456+00:00"


def test_times_keep_their_zone() -> None:
    east = datetime(2026, 11, 30, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    (row,) = decode(RowEncoder(east).encode([Transfer("t", "a", "b", 1, "x")]))
    assert row["create_time"] == "2026-11-30T10:00:00+02:00"
    assert datetime.fromisoformat(row["create_time"] or "") == NOW.replace(hour=8, microsecond=0)


# Text that needs no escape, for the rows that take `encode`'s whole-slice check.
clean = st.text(alphabet=st.sampled_from(["a", "N", "-", ":", "/", "0", " ", "é"]), max_size=8)


@st.composite
def mostly_plain(draw: st.DrawFn) -> Transfer:
    """Rows as most of a block: no pending id, no timeout, nothing to escape;
    now and then one value that needs an escape, or a pending id or timeout."""
    text = texts if draw(st.integers(0, 7)) == 0 else clean
    return Transfer(
        id=draw(text.filter(bool)),
        debit_account_id=draw(text),
        credit_account_id=draw(text),
        amount=draw(st.integers(1, AMOUNT_MAX)),
        asset=draw(text),
        code=draw(st.integers(0, 65535)),
        flags=draw(st.sampled_from([0, 0, 0, 1])),
        pending_id=draw(st.sampled_from(["", "", "", "", "", "", "", "p\\N"])),
        timeout_s=draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 30])),
        reference=draw(text),
        user_data=draw(text),
    )


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(mostly_plain(), max_size=12))
def test_a_slice_checked_as_a_whole_encodes_as_row_by_row(batch: list[Transfer]) -> None:
    encoder = RowEncoder(NOW)
    data = encoder.encode(batch)
    assert data == encoder.encode_each(batch)
    assert decode(data) == [expected(t, NOW) for t in batch]


@pytest.mark.parametrize("special", ["\\", "\t", "\n", "\r", "\\N", "\r\n"])
@pytest.mark.parametrize("column", ["id", "debit_account_id", "asset", "reference", "user_data"])
def test_one_value_to_escape_in_a_plain_slice_is_escaped(special: str, column: str) -> None:
    """One value with a character COPY reads (a raw carriage return ends a row
    too) among plain rows: the slice is encoded row by row, that value escaped."""
    rows = [Transfer(f"t{i}", "a", "b", 1, "x") for i in range(3)]
    changes: dict[str, Any] = {column: f"v{special}w"}  # a text field, by name
    rows[1] = replace(rows[1], **changes)
    encoder = RowEncoder(NOW)
    data = encoder.encode(rows)
    assert data == encoder.encode_each(rows)
    assert b"\r" not in data and data.count(b"\n") == 3
    assert decode(data) == [expected(t, NOW) for t in rows]
