"""The relay's pure parts: subjects, headers, the resume point, [jetstream]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.relay import settings, subjects
from core.relay.subjects import Published

MERCHANTS = st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}", fullmatch=True)
TYPES = st.sampled_from(["invoice.created", "invoice.paid", "payment.reorged", "payout.sent"])


@pytest.mark.parametrize(
    ("merchant", "event_type", "subject"),
    [
        ("acme", "invoice.paid", "kassa.events.acme.invoice.paid"),
        ("", "reconciliation.completed", "kassa.events._platform.reconciliation.completed"),
    ],
)
def test_subjects_name_the_merchant_then_the_event_type(
    merchant: str, event_type: str, subject: str
) -> None:
    assert subjects.subject("kassa.events", merchant, event_type) == subject


@pytest.mark.parametrize(
    ("merchant", "event_type"),
    [("a.b", "invoice.paid"), ("a*", "invoice.paid"), ("a", "invoice.>"), ("a b", "x.y")],
)
def test_a_token_that_would_change_the_subject_is_refused(merchant: str, event_type: str) -> None:
    with pytest.raises(AssertionError):
        subjects.subject("kassa.events", merchant, event_type)


@given(MERCHANTS, TYPES)
def test_every_subject_is_under_the_streams_wildcard_and_names_its_merchant(
    merchant: str, event_type: str
) -> None:
    subject = subjects.subject("kassa.events", merchant, event_type)
    tokens = subject.split(".")
    assert tokens[:3] == ["kassa", "events", merchant]
    assert ".".join(tokens[3:]) == event_type
    assert all(t and "*" not in t and ">" not in t for t in tokens)


def test_headers_deduplicate_by_event_id_and_expect_the_previous_event() -> None:
    first = subjects.headers("e1", 1, None)
    assert first == {"Nats-Msg-Id": "e1", "Kassa-Sequence": "1"}
    second = subjects.headers("e2", 2, Published(1, "e1"))
    assert second["Nats-Expected-Last-Msg-Id"] == "e1"
    with pytest.raises(AssertionError):
        subjects.headers("e2", 2, Published(2, "e2"))  # never behind what was published


@given(st.lists(st.uuids(), min_size=1, max_size=50, unique=True))
def test_a_chain_of_headers_expects_each_previous_message(ids: list[object]) -> None:
    previous: Published | None = None
    for sequence, event_id in enumerate(map(str, ids), start=1):
        h = subjects.headers(event_id, sequence, previous)
        assert h.get("Nats-Expected-Last-Msg-Id") == (previous.event_id if previous else None)
        assert int(h["Kassa-Sequence"]) == sequence
        previous = Published(sequence, event_id)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_resume_from_the_stream_never_from_elsewhere(floor: int, last: int) -> None:
    assert subjects.resume_after(None, floor) == floor
    assert subjects.resume_after(Published(last, "x"), floor) == last


def test_jetstream_is_off_unless_configured_and_strict_when_it_is() -> None:
    assert settings.parse({}) is None
    parsed = settings.parse({"servers": ["nats://127.0.0.1:4222"], "replicas": 3})
    assert parsed is not None and parsed.replicas == 3 and parsed.stream == "KASSA_EVENTS"
    for bad in (
        {"servers": []},
        {"servers": ["http://x"]},
        {"servers": ["nats://x"], "nope": 1},
        {"servers": ["nats://x"], "subject_prefix": "a.>"},
        {"servers": ["nats://x"], "replicas": 0},
        {"servers": ["nats://x"], "publish_timeout_s": 0},
    ):
        with pytest.raises(ValueError):
            settings.parse(bad)
