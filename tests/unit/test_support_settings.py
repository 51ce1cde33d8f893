"""[support]: defaults, every key, and a clear error for each bad value."""

from __future__ import annotations

import pytest

from core.support.settings import SupportSettings, parse


def test_defaults_and_every_key() -> None:
    assert parse({}) == SupportSettings(False, 3600.0, 3)
    assert parse(
        {"require_second_approval": True, "payout_stuck_after_s": 90, "webhook_failing_attempts": 5}
    ) == SupportSettings(True, 90.0, 5)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"require_second_aproval": True}, "unknown keys"),
        ({"require_second_approval": "yes"}, "require_second_approval"),
        ({"require_second_approval": 1}, "require_second_approval"),
        ({"payout_stuck_after_s": 0}, "payout_stuck_after_s"),
        ({"payout_stuck_after_s": True}, "payout_stuck_after_s"),
        ({"payout_stuck_after_s": "1h"}, "payout_stuck_after_s"),
        ({"webhook_failing_attempts": 0}, "webhook_failing_attempts"),
        ({"webhook_failing_attempts": 2.5}, "webhook_failing_attempts"),
    ],
)
def test_bad_values_are_refused_by_name(raw: dict[str, object], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        parse(raw)
