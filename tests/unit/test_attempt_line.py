"""The webhook attempt line (core/webhooks/worker._recorded_all), written without a
LogRecord (core.telemetry.logs.DirectLine), is the line the logging path writes,
byte for byte, with a delivery process's mark (logs.mark) or without; in any other
logging configuration it is logged the ordinary way. One line and one count per
attempt either way."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.telemetry import logs
from core.webhooks import retry, worker
from tests.support.log_lines import assert_same_line, schema_only

NOW = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
text = st.text(st.characters(codec="utf-8"), max_size=40)


def _attempted(
    delivery_id: uuid.UUID,
    event_id: str,
    attempt: int,
    outcome: retry.Outcome,
    status: retry.Status,
) -> worker.Attempted:
    claimed = worker.Claimed(
        delivery_id, attempt, NOW, "https://example.com/hook", ["s"], event_id, "t", b"{}", "ep"
    )
    at = NOW if status is retry.Status.PENDING else None
    return worker.Attempted(claimed, NOW, 3, outcome, retry.Decision(status, at, "r"), NOW)


def _logged(attempted: worker.Attempted) -> None:
    """The line as the logging path writes it (what the worker wrote before DirectLine)."""
    claimed, outcome = attempted.claimed, attempted.outcome
    worker.log.info(
        "webhook attempt",
        extra={
            "delivery": str(claimed.delivery_id),
            "event_id": claimed.event_id,
            "attempt": claimed.attempt,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "decision": attempted.decision.status.value,
        },
    )


@settings(max_examples=200, deadline=None)
@given(
    delivery_id=st.uuids(),
    event_id=text,
    attempt=st.integers(1, 2**31 - 1),
    status_code=st.none() | st.integers(100, 599),
    error=text,
    status=st.sampled_from(retry.Status),
    mark=st.none() | st.integers(0, 64),
)
def test_the_direct_attempt_line_is_the_logging_line(
    delivery_id: uuid.UUID,
    event_id: str,
    attempt: int,
    status_code: int | None,
    error: str,
    status: retry.Status,
    mark: int | None,
) -> None:
    attempted = _attempted(
        delivery_id, event_id, attempt, retry.Outcome(status_code, error), status
    )
    with schema_only() as out:
        if mark is not None:
            logs.mark({"delivery_process": mark})
        _logged(attempted)
        worker._recorded_all([attempted])
    logged, direct, rest = out.getvalue().split("\n")
    assert rest == ""
    assert_same_line(logged, direct)
    line = json.loads(direct)
    assert line["msg"] == "webhook attempt" and line["logger"] == "kassa.core.webhooks"
    assert line.get("delivery_process") == mark
    assert list(line)[-1] == ("decision" if mark is None else "delivery_process")


def _count(status: retry.Status) -> float:
    return float(worker._attempts_counter(status)._value.get())


def test_one_line_and_one_count_per_attempt() -> None:
    attempted = _attempted(uuid.uuid4(), "e-1", 1, retry.Outcome(200), retry.Status.SUCCEEDED)
    before = _count(retry.Status.SUCCEEDED)
    with schema_only() as out:
        worker._recorded_all([attempted])
    assert out.getvalue().count("\n") == 1
    assert _count(retry.Status.SUCCEEDED) == before + 1


def test_another_configuration_gets_the_line_through_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempted = _attempted(
        uuid.uuid4(), "e-2", 2, retry.Outcome(None, "timeout"), retry.Status.PENDING
    )
    before = _count(retry.Status.PENDING)
    with caplog.at_level(logging.INFO, logger="kassa.core.webhooks"):
        worker._recorded_all([attempted])
    (record,) = [r for r in caplog.records if r.getMessage() == "webhook attempt"]
    assert record.__dict__["event_id"] == "e-2" and record.__dict__["error"] == "timeout"
    assert record.__dict__["attempt"] == 2 and record.__dict__["decision"] == "pending"
    assert _count(retry.Status.PENDING) == before + 1


class _Writes:
    """A stream counting its writes."""

    def __init__(self) -> None:
        self.text: list[str] = []

    def write(self, text: str) -> None:
        self.text.append(text)

    def flush(self) -> None:
        pass


outcomes = st.builds(retry.Outcome, st.none() | st.integers(100, 599), text)


@settings(max_examples=100, deadline=None)
@given(
    attempts=st.lists(
        st.tuples(
            st.uuids(), text, st.integers(1, 2**31 - 1), outcomes, st.sampled_from(retry.Status)
        ),
        min_size=1,
        max_size=20,
    ),
    mark=st.none() | st.integers(0, 64) | st.sampled_from(["decision", "level"]),
)
def test_attempts_recorded_together_are_the_logging_lines_in_one_write(
    attempts: list[tuple[uuid.UUID, str, int, retry.Outcome, retry.Status]],
    mark: int | str | None,
) -> None:
    """_recorded_all: one line per attempt, each the logging path's bytes but the
    timestamp, in one write; a mark that names a field or a schema key (as a dict
    update would replace it) falls back to a line at a time, still the same bytes."""
    batch = [_attempted(*a) for a in attempts]
    counts = {s: _count(s) for s in retry.Status}
    with schema_only() as out:
        if isinstance(mark, int):
            logs.mark({"delivery_process": mark})
        elif isinstance(mark, str):
            logs.mark({mark: "marked"})
        for attempted in batch:
            _logged(attempted)
        logged = out.getvalue()
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, logging.StreamHandler)
        writes = _Writes()
        handler.setStream(writes)  # type: ignore[arg-type]
        worker._recorded_all(batch)
    logged_lines = logged.split("\n")
    direct_lines = "".join(writes.text).split("\n")
    assert logged_lines[-1] == direct_lines[-1] == ""
    assert len(direct_lines) == len(batch) + 1
    for one, other in zip(logged_lines, direct_lines, strict=True):
        if one:
            assert_same_line(one, other)
    if mark is None or isinstance(mark, int):
        assert len(writes.text) == 1
    for s in retry.Status:
        assert _count(s) == counts[s] + sum(a.decision.status is s for a in batch)
