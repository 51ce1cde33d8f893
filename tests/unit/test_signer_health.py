"""The signer's health decider: SERVING exactly when neither the token nor the audit store
has a problem."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signer.api.health import decide

problems = st.none() | st.text(min_size=1, max_size=20)


def test_examples() -> None:
    assert decide(None, None).serving
    assert not decide("the token failed: GeneralError", None).serving
    assert not decide(None, "the state file was replaced").serving


@given(problems, problems)
def test_serving_iff_nothing_is_wrong(token: str | None, audit_store: str | None) -> None:
    verdict = decide(token, audit_store)
    assert verdict.serving == (token is None and audit_store is None)
    assert (verdict.token_problem, verdict.store_problem) == (token, audit_store)
