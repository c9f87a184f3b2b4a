"""``Limits:*`` from environment and JSON: the issue's key names, errors naming the key."""

from __future__ import annotations

import pytest

from core import ConfigurationError, load_settings
from core._build import limit_policy
from core.limits import Limit


def test_limits_from_environment_variables_scale_to_the_window():
    settings = load_settings(environ={
        "Limits__Tenants__Contoso__TokensPerMinute": "12000",
        "Limits__Tenants__Contoso__RequestsPerMinute": "60",
        "Limits__Default__TokensPerMinute": "600",
        "Limits__WindowSeconds": "10",
        "Limits__OnStoreFailure": "Deny",
    })  # fmt: skip
    policy = limit_policy(settings.limits)
    assert policy.of("contoso").tokens == Limit(2000, 10) and policy.of("contoso").requests == Limit(10, 10)
    assert policy.of("anyone").tokens == Limit(100, 10) and policy.of("anyone").requests is None
    assert settings.limits.on_store_failure == "deny"


def test_without_limits_nobody_is_limited():
    settings = load_settings(environ={})
    assert settings.limits.window_seconds == 60 and settings.limits.on_store_failure == "allow"
    assert not limit_policy(settings.limits).any_limited


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("Limits__Tenants__acme__TokensPerMinute", "lots", "Limits:Tenants:acme:TokensPerMinute"),
        ("Limits__Default__RequestsPerMinute", "-1", "Limits:Default:RequestsPerMinute"),
        ("Limits__WindowSeconds", "0", "Limits:WindowSeconds"),
        ("Limits__OnStoreFailure", "maybe", "Limits:OnStoreFailure"),
    ],
)
def test_a_bad_limit_stops_the_start_naming_the_key(key, value, named):
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ={key: value})
    assert error.value.key == named
