"""The audit hash chain, offline: a good chain verifies; every kind of tampering is found at the
record where it happened; a tail cut is only visible against an anchored head."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from signer.audit.chain import (
    GENESIS_HASH,
    RECORD_FIELDS,
    canonical,
    record_hash,
    seal,
    seal_text,
    verify,
)


def chain(n: int) -> list[str]:
    out, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        record = seal(
            {"decision": "REFUSED", "reason": f"R{i}", "intent": {"amount": str(i)}}, i, prev
        )
        prev = record["record_hash"]
        out.append(canonical(record).decode())
    return out


def test_a_good_chain_verifies_and_reports_its_head() -> None:
    records = chain(5)
    result = verify((r, None) for r in records)
    assert result.first_break is None and result.count == 5 and result.head_seq == 5
    assert result.head_hash == json.loads(records[-1])["record_hash"]
    assert verify([]).head_hash == GENESIS_HASH


def test_record_hash_covers_every_field_but_itself() -> None:
    record = json.loads(chain(1)[0])
    for name in record:
        if name != "record_hash":
            assert record_hash({**record, name: "x"}) != record["record_hash"], name


def edited(records: list[str], index: int) -> list[str]:
    record = json.loads(records[index])
    record["intent"]["amount"] = "999"
    return [*records[:index], canonical(record).decode(), *records[index + 1 :]]


def rehashed_insert(records: list[str], index: int) -> list[str]:
    """A forged record with a valid own hash chained to its predecessor."""
    prev = GENESIS_HASH if index == 0 else json.loads(records[index - 1])["record_hash"]
    forged = seal({"decision": "SIGNED", "reason": "ALLOWED"}, index + 1, prev)
    return [*records[:index], canonical(forged).decode(), *records[index:]]


@given(st.integers(2, 8), st.data())
def test_every_tampering_is_found_at_its_record(n: int, data: st.DataObject) -> None:
    records = chain(n)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
    cases = {
        "edit": (edited(records, i), i),
        "delete": ([r for k, r in enumerate(records) if k != i], i),
        "swap": (
            [records[j] if k == i else records[i] if k == j else r for k, r in enumerate(records)],
            min(i, j),
        ),
        "insert": (rehashed_insert(records, i), i + 1),
    }
    for name, (tampered, first_bad) in cases.items():
        if name == "delete" and i == n - 1:
            continue  # a cut tail is the one thing a chain cannot see alone (see below)
        result = verify((r, None) for r in tampered)
        assert result.first_break is not None, name
        assert result.first_break.position == first_bad + 1, (name, result.first_break)
        assert result.count == first_bad


def test_a_cut_tail_verifies_but_loses_the_anchored_head() -> None:
    records = chain(4)
    anchored = json.loads(records[-1])["record_hash"]
    result = verify((r, None) for r in records[:-1])
    assert result.first_break is None
    assert anchored not in result.hashes


def test_a_stored_hash_column_that_disagrees_is_a_break() -> None:
    records = chain(2)
    result = verify([(records[0], "f" * 64), (records[1], None)])
    assert result.first_break is not None and result.first_break.position == 1


def test_a_duplicate_key_is_tampering() -> None:
    """A lenient parser keeps the last of two equal keys, so a record could read one way to
    the verifier and another to a reader: two "reason" keys break the chain at that record."""
    records = chain(3)
    text = records[1]
    forged = text[:-1] + ',"reason":"ALLOWED"}'
    assert json.loads(forged)["reason"] == "ALLOWED"  # what a lenient reader would see
    result = verify([(records[0], None), (forged, None), (records[2], None)])
    assert result.first_break is not None and result.first_break.position == 2
    assert "duplicate JSON key" in result.first_break.problem
    nested = text.replace('"intent":{', '"intent":{"amount":"9",', 1)
    broken = verify([(records[0], None), (nested, None)]).first_break
    assert broken is not None and "duplicate" in broken.problem


def test_nan_and_infinity_are_not_json() -> None:
    records = chain(1)
    odd = records[0].replace('"seq":1', '"seq":NaN')
    broken = verify([(odd, None)]).first_break
    assert broken is not None and broken.problem == "not JSON"


_TEXT = st.text(max_size=40)  # any characters: quotes, backslashes, commas, non-ASCII
_FIELD_VALUE = st.one_of(
    st.none(),
    _TEXT,
    st.dictionaries(
        st.sampled_from(["request_hash", "record_hash", "amount", ',"request_hash":', "x"]) | _TEXT,
        _TEXT,
        max_size=4,
    ),
)


@settings(deadline=None)  # the machine is shared: a slow example is not a failure
@given(
    st.fixed_dictionaries(
        {},
        optional={n: _FIELD_VALUE for n in RECORD_FIELDS if n not in ("seq", "prev_hash")},
    ),
    st.integers(min_value=1, max_value=2**40),
)
def test_the_spliced_record_text_is_the_canonical_sealed_record(
    fields: dict[str, object], seq: int
) -> None:
    """seal_text encodes once and splices record_hash in: it must be byte for byte what
    canonical(seal(...)) gives, whatever the fields hold (nested keys named request_hash,
    values with quotes and the splice marker itself)."""
    text, digest = seal_text(fields, seq, "ab" * 32)
    record = seal(fields, seq, "ab" * 32)
    assert text == canonical(record).decode()
    assert digest == record["record_hash"]
