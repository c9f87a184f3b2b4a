"""Who the caller is, per Auth:Mode, through the built gateway (``Gateway.authenticate``):
settings in (environment variables, as the hosts read them), a tenant or the right error out."""

from __future__ import annotations

import logging

import pytest
from auth_support import new_tenant_key

from core import (
    ConfigurationError,
    Credentials,
    Forbidden,
    Gateway,
    InvalidRequest,
    Unauthenticated,
    build_gateway,
    load_settings,
)
from core.access import normalise_tenant


def gateway(**environ: str) -> Gateway:
    return build_gateway(load_settings(environ=environ))


@pytest.fixture
def keys() -> dict[str, tuple[str, str]]:
    return {t: new_tenant_key(t) for t in ("contoso", "fabrikam", "contoso-next")}


def keys_gateway(keys: dict[str, tuple[str, str]], mode: str = "keys", **extra: str) -> Gateway:
    rotation = f"{keys['contoso'][1]};{keys['contoso-next'][1]}"  # two valid keys during a rotation
    return gateway(Auth__Mode=mode, Auth__Keys__contoso=rotation, Auth__Keys__Fabrikam=keys["fabrikam"][1], **extra)


async def test_mode_none_keeps_the_c_sharp_order_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    gw = gateway()
    with caplog.at_level(logging.WARNING, logger="core.gateway"):
        await gw.start()  # said when the host starts serving, so that a failed start stays one line
    assert "any caller can claim any tenant" in caplog.text
    assert await gw.authenticate(Credentials(tenant_query="Acme", tenant_header="other")) == "acme"
    assert await gw.authenticate(Credentials(tenant_header=" Initech ")) == "initech"
    with pytest.raises(InvalidRequest, match="no tenant given"):
        await gw.authenticate(Credentials())
    await gw.aclose()


async def test_keys_by_api_key_header_or_bearer_both_rotation_keys_work(keys) -> None:
    gw = keys_gateway(keys)
    assert await gw.authenticate(Credentials(api_key=keys["contoso"][0])) == "contoso"
    assert await gw.authenticate(Credentials(api_key=keys["contoso-next"][0])) == "contoso"
    assert await gw.authenticate(Credentials(authorization=f"Bearer {keys['fabrikam'][0]}")) == "fabrikam"


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        (Credentials(), "no credentials"),
        (Credentials(api_key="gwk_not-a-configured-key-at-all"), "unknown API key"),
        (Credentials(authorization="Bearer gwk_not-a-configured-key-at-all"), "unknown API key"),
        (Credentials(authorization="Basic dXNlcjpwYXNz"), "must be 'Bearer <credential>'"),
        (Credentials(tenant_query="contoso"), "no credentials"),  # naming a tenant is not a credential
    ],
    ids=["none", "unknown api-key", "unknown bearer key", "basic", "tenant only"],
)
async def test_keys_mode_refuses_missing_or_unknown_keys(keys, credentials: Credentials, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        await keys_gateway(keys).authenticate(credentials)


async def test_a_query_or_header_naming_another_tenant_is_forbidden_the_same_one_is_fine(keys) -> None:
    gw = keys_gateway(keys)
    key = keys["contoso"][0]
    assert await gw.authenticate(Credentials(api_key=key, tenant_query="Contoso", tenant_header="contoso")) == "contoso"
    for claimed in ({"tenant_query": "fabrikam"}, {"tenant_header": "fabrikam"}):
        with pytest.raises(Forbidden, match=r"tenant 'contoso' but .* names another tenant"):
            await gw.authenticate(Credentials(api_key=key, **claimed))


async def test_jwt_only_mode_says_api_keys_are_not_accepted(keys) -> None:
    gw = gateway(Auth__Mode="jwt", Auth__Jwt__Issuer="https://login.microsoftonline.com/t/v2.0",
                 Auth__Jwt__Audience="api://gw")
    with pytest.raises(Unauthenticated, match="api-key is not accepted here"):
        await gw.authenticate(Credentials(api_key=keys["contoso"][0]))
    with pytest.raises(Unauthenticated, match="not a well-formed JWT"):  # no network needed to refuse it
        await gw.authenticate(Credentials(authorization="Bearer a.b.c"))


async def test_metrics_key_needs_the_bearer_key_when_set(keys) -> None:
    metrics_key, metrics_hash = new_tenant_key("metrics")
    gw = keys_gateway(keys, Auth__MetricsKey=metrics_hash)
    gw.authorize_metrics(f"Bearer {metrics_key}")
    for wrong in (None, f"Bearer {keys['contoso'][0]}", metrics_key):
        with pytest.raises(Unauthenticated, match="Auth:MetricsKey"):
            gw.authorize_metrics(wrong)
    gateway().authorize_metrics(None)  # unset: open (Functions puts its function key in front)


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"Auth__Mode": "oauth"}, "Auth:Mode"),
        ({"Auth__Mode": "jwt", "Auth__Jwt__Audience": "x"}, "Auth:Jwt:Issuer"),
        ({"Auth__Mode": "jwt", "Auth__Jwt__Issuer": "https://issuer.example/v2.0"}, "Auth:Jwt:Audience"),
        ({"Auth__Mode": "jwt", "Auth__Jwt__Issuer": "issuer.example", "Auth__Jwt__Audience": "x"}, "Auth:Jwt:Issuer"),
        ({"Auth__Mode": "keys"}, "Auth:Keys"),
        ({"Auth__Mode": "keys", "Auth__Keys__contoso": "gwk_plain-text-key-instead-of-hash"}, "Auth:Keys:contoso"),
        ({"Auth__Mode": "keys", "Auth__Keys__contoso": "sha256:" + "ab" * 31}, "Auth:Keys:contoso"),
        ({"Auth__MetricsKey": "plain-metrics-secret"}, "Auth:MetricsKey"),
    ],
    ids=["mode", "no issuer", "no audience", "issuer not a URL", "keys mode, no keys", "plain key",
         "short hash", "plain metrics key"],
)
def test_bad_auth_settings_fail_at_start_up_naming_the_key_never_the_value(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ=environ)
    assert info.value.key == key
    for name, value in environ.items():
        if name.startswith(("Auth__Keys__", "Auth__MetricsKey")):
            assert value not in str(info.value)


@pytest.mark.parametrize("name", ["\u212aontoso", "..", "a b"])
def test_tenant_names_in_auth_keys_are_checked_when_settings_load(keys, name: str) -> None:
    """At load time, so that the Functions host refuses them at indexing, before any request."""
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ={"Auth__Mode": "keys", f"Auth__Keys__{name}": keys["contoso"][1]})
    assert "ASCII" in str(info.value) and info.value.key == f"Auth:Keys:{name}"


def test_a_key_shared_by_two_tenants_is_refused(keys) -> None:
    with pytest.raises(ConfigurationError, match="same key hash"):
        gateway(Auth__Mode="keys", Auth__Keys__a=keys["contoso"][1], Auth__Keys__b=keys["contoso"][1])


@pytest.mark.parametrize("name", ["\u212aontoso", "caf\u00e9", ".", "..", " ... ", "a/b", "x" * 65, ""])
def test_tenant_names_are_strict_ascii_and_not_only_dots(name: str) -> None:
    with pytest.raises(InvalidRequest):
        normalise_tenant(name, "the test")


def test_fold_unknown_tenants_defaults_on_with_auth_and_off_without(keys) -> None:
    assert load_settings(environ={}).folds_unknown_tenants is False
    on = load_settings(environ={"Auth__Mode": "keys", "Auth__Keys__contoso": keys["contoso"][1]})
    assert on.folds_unknown_tenants is True
    off = load_settings(environ={"Auth__Mode": "keys", "Auth__Keys__contoso": keys["contoso"][1],
                                 "Prometheus__FoldUnknownTenants": "false"})
    assert off.folds_unknown_tenants is False


@pytest.mark.parametrize(
    ("url", "ok"),
    [("https://login.microsoftonline.com/t/v2.0", True), ("http://127.0.0.1:8080/t/v2.0", True),
     ("http://localhost:9000", True), ("http://login.microsoftonline.com/t/v2.0", False),
     ("http://127.0.0.1.evil.example/", False), ("login.microsoftonline.com", False)],
)
def test_issuer_and_jwks_uri_must_be_https_except_on_loopback(url: str, ok: bool) -> None:
    for key in ("Issuer", "JwksUri"):
        environ = {"Auth__Mode": "jwt", "Auth__Jwt__Issuer": "https://issuer.example/v2.0",
                   "Auth__Jwt__Audience": "api://gw", f"Auth__Jwt__{key}": url}
        if ok:
            load_settings(environ=environ)
        else:
            with pytest.raises(ConfigurationError) as info:
                load_settings(environ=environ)
            assert info.value.key == f"Auth:Jwt:{key}" and "https" in info.value.detail
