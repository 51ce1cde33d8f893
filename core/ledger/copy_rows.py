"""Decided transfers as rows of PostgreSQL's COPY text format, for the store
to stream into ledger_transfers while the rules decide the rest of a batch.

Why text and not asyncpg's binary `copy_records_to_table`: that one buffers
512 KiB before it sends anything (a 5,000-transfer batch is ~0.8 MB), so the
server would start only when the rules are nearly done; text rows are
encoded here, in the deciding thread, and sent as each slice is final.

The format (COPY … FROM STDIN, FORMAT text): columns separated by a tab,
rows ended by a newline, NULL as \\N, and in a value a backslash, tab,
newline or carriage return escaped with a backslash. Ids are printable
(rules.valid_id), but references, user data and assets are any text, so
every text value is escaped (checked on the whole row at once first: most
rows need nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from core.ledger.rules import Transfer

# The column order of `encode`'s rows: the text columns that are never NULL
# first, so that one check of the joined row covers them all.
COLUMNS = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "asset",
    "code",
    "flags",
    "timeout_s",
    "reference",
    "user_data",
    "pending_id",
    "create_time",
    "expire_time",
)
_NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# The first ten columns, printf-style: the quickest here (per row, of a whole
# block); %d for an int whatever its class (an IntFlag or a bool formats as a
# name with %s).
_HEAD = "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s"
# Tabs in the row's first ten columns, and in a whole row, when no value holds one.
_TABS = 9
_TABS_PER_ROW = len(COLUMNS) - 1


def escape(value: str) -> str:
    return value.translate(_ESCAPES)


def _timestamp(at: datetime) -> str:
    assert at.tzinfo is not None, at  # a naive time would be read in the session's zone
    return at.isoformat()


class RowEncoder:
    """Encodes the writes of one posting, all created at `now`."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._created = _timestamp(now)
        # What an ISO time is made of: nothing COPY or printf-style formatting reads.
        assert not set(self._created) & set("\\\t\n\r%"), self._created
        # A row with no pending id and no timeout, the ten values of `_HEAD` and
        # the NULL pending id, the creation time and the NULL expire time.
        self._plain = _HEAD + f"\t{_NULL}\t{self._created}\t{_NULL}\n"

    def encode(self, writes: Sequence[Transfer]) -> bytes:
        """The rows of `writes`, in order, as COPY FROM STDIN reads FORMAT text.

        A slice of plain rows (no pending id, no timeout: most of a block) is
        formatted as it is and checked once as a whole: if the slice holds
        exactly the tabs, newlines and backslashes its row template puts there
        and no carriage return, no value holds any of them, so none needs an
        escape. Otherwise (or if a row is not plain) row by row, as
        `encode_each`; either way the same bytes.
        """
        plain = self._plain
        parts: list[str] = []
        append = parts.append
        for t in writes:
            if t.pending_id or t.timeout_s > 0:
                return self.encode_each(writes)
            append(
                plain
                % (
                    t.id,
                    t.debit_account_id,
                    t.credit_account_id,
                    t.amount,
                    t.asset,
                    t.code,
                    t.flags,
                    t.timeout_s,
                    t.reference,
                    t.user_data,
                )
            )
        text = "".join(parts)
        rows = len(parts)
        if (
            text.count("\t") == _TABS_PER_ROW * rows
            and text.count("\n") == rows
            and text.count("\\") == 2 * rows  # the two NULLs
            and "\r" not in text
        ):
            return text.encode()
        return self.encode_each(writes)

    def encode_each(self, writes: Sequence[Transfer]) -> bytes:
        """`encode`, row by row, each row checked (and escaped) on its own."""
        lines: list[str] = []
        append = lines.append
        created = self._created
        for t in writes:
            head = _HEAD % (
                t.id,
                t.debit_account_id,
                t.credit_account_id,
                t.amount,
                t.asset,
                t.code,
                t.flags,
                t.timeout_s,
                t.reference,
                t.user_data,
            )
            if head.count("\t") != _TABS or "\\" in head or "\n" in head or "\r" in head:
                head = _HEAD % (
                    escape(t.id),
                    escape(t.debit_account_id),
                    escape(t.credit_account_id),
                    t.amount,
                    escape(t.asset),
                    t.code,
                    t.flags,
                    t.timeout_s,
                    escape(t.reference),
                    escape(t.user_data),
                )
            pending = escape(t.pending_id) if t.pending_id else _NULL
            # As the INSERT computes it: create time plus the timeout, for a pending one.
            expire = (
                _timestamp(self.now + timedelta(seconds=t.timeout_s)) if t.timeout_s > 0 else _NULL
            )
            append(f"{head}\t{pending}\t{created}\t{expire}\n")
        return "".join(lines).encode()
