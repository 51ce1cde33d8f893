"""The verification recipe in docs/webhooks.md accepts what the core signs."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from core.webhooks import signing
from tests.support.webhooks import docs_recipe

VERIFY = docs_recipe()


@given(body=st.binary(max_size=300), age_s=st.integers(min_value=-1000, max_value=1000))
def test_recipe_agrees_with_the_signer(body: bytes, age_s: int) -> None:
    now = int(time.time())
    header = signing.header(["whsec_new", "whsec_old"], now - age_s, body)
    fresh = abs(age_s) <= 295  # a margin for the clock moving during the test
    if fresh:
        assert VERIFY(body, header, "whsec_new") and VERIFY(body, header, "whsec_old")
    if abs(age_s) > 305:
        assert not VERIFY(body, header, "whsec_new")
    assert not VERIFY(body + b"!", header, "whsec_new")
    assert not VERIFY(body, header, "whsec_other")
