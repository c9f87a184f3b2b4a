"""Every header form of "come back later" that Azure OpenAI, APIM and the OpenAI API send."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from core.upstream._cooldown import cooldown_seconds

NOW = 1_800_000_000.0


def wait(**headers: str) -> float | None:
    lower = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return cooldown_seconds(lower.get, now=lambda: NOW)


def test_retry_after_ms_wins_over_retry_after():
    assert wait(retry_after_ms="1500", retry_after="2") == 1.5


@pytest.mark.parametrize(("value", "expected"), [("5", 5.0), ("0", 0.0), (formatdate(NOW + 7, usegmt=True), 7.0),
                                                 (formatdate(NOW - 30, usegmt=True), 0.0)])
def test_retry_after_in_seconds_or_as_an_http_date(value, expected):
    assert wait(retry_after=value) == pytest.approx(expected)


@pytest.mark.parametrize(("requests", "tokens", "expected"), [("1m30s", "250ms", 90.0), ("2", None, 2.0),
                                                              (None, "6m0s", 360.0), ("1.5s", "1h", 3600.0)])
def test_reset_headers_when_nothing_else_is_sent(requests, tokens, expected):
    headers = {k: v for k, v in (("x_ratelimit_reset_requests", requests),
                                 ("x_ratelimit_reset_tokens", tokens)) if v is not None}
    assert wait(**headers) == expected


@pytest.mark.parametrize("junk", ["soon", "-", "1x", "nan", "inf", "Mon, 99 Foo 2026"])
def test_unreadable_values_give_none_so_the_configured_cooldown_applies(junk):
    assert wait(retry_after=junk) is None
    assert wait(x_ratelimit_reset_tokens=junk) is None
    assert wait() is None
