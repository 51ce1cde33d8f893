"""[leadership] configuration: strict, bounded, a default holder name."""

from __future__ import annotations

import pytest

from core.leadership.settings import LeadershipSettings, parse


def test_defaults_and_a_named_holder() -> None:
    default = parse({})
    assert default.lease_s == LeadershipSettings.lease_s == 10.0
    assert ":" in default.holder  # host:pid
    assert parse({"lease_s": 3, "holder": "replica-0"}) == LeadershipSettings(3.0, "replica-0")


@pytest.mark.parametrize(
    "raw",
    [
        {"lease_s": 0},
        {"lease_s": 0.5},
        {"lease_s": True},
        {"lease_s": "10"},
        {"lease_s": 7200},
        {"holder": ""},
        {"holder": "a b"},
        {"holder": "x\n"},
        {"holder": 3},
        {"leese_s": 3},
    ],
)
def test_bad_values_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse(raw)
