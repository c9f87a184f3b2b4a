"""Authenticated tenants over real HTTP: the REST app on uvicorn, a real local token issuer (JWKS),
the simulators over real HTTP. Nobody acts or is billed as another tenant."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from auth_support import Issuer, SigningKey, new_tenant_key
from gateway_stack import gateway_stack
from prometheus_client.parser import text_string_to_metric_families

QUESTION = [{"role": "user", "content": "Tell me about Milan"}]


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.fixture
async def issuer(signing_key: SigningKey) -> AsyncIterator[Issuer]:
    server = await Issuer([signing_key]).start()
    yield server
    await server.stop()


def billed(metrics_text: str, name: str = "openai_total_tokens_total") -> dict[str, float]:
    """Total tokens by tenant label, from a /metrics page."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name:
                tenant = sample.labels["tenant_name"]
                totals[tenant] = totals.get(tenant, 0) + sample.value
    return totals


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, reason: str, secret: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and reason in body["detail"], body
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    if secret:
        signature = secret.split(".")[-1]
        assert secret not in response.text and (not signature or signature not in response.text)
    return body


async def test_a_valid_token_is_served_and_billed_to_its_tenant_whatever_else_is_claimed(tmp_path, issuer) -> None:
    token = issuer.token("Contoso")
    async with gateway_stack(tmp_path, Auth=issuer.settings()) as stack:
        chat = await stack.client.post("/openai/chat", json=QUESTION, headers=bearer(token))
        stream = await stack.client.post("/openai/stream?tenant=contoso", json=QUESTION, headers=bearer(token))
        forbidden = await stack.client.post("/openai/chat?tenant=fabrikam", json=QUESTION, headers=bearer(token))
        spoofed = await stack.client.post("/openai/chat", json=QUESTION,
                                          headers={**bearer(token), "X-Tenant": "fabrikam"})
        anonymous = await stack.client.post("/openai/chat?tenant=contoso", json=QUESTION)
        page = (await stack.client.get("/metrics")).text
    assert chat.status_code == 200 and chat.headers["x-gateway-instance"] == "AlphaOpenAI"
    assert stream.status_code == 200 and stream.json()
    assert_problem(forbidden, 403, "names another tenant")
    assert_problem(spoofed, 403, "the X-Tenant header names another tenant")
    assert_problem(anonymous, 401, "no credentials")
    tokens = billed(page)
    assert set(tokens) == {"contoso"}  # nothing for fabrikam: refused calls never reach an instance
    assert tokens["contoso"] > int(chat.headers["x-total-tokens"]) > 0  # the chat and the stream
    assert stack.alpha.stats.requests == 2 and stack.beta.stats.requests == 0


async def test_every_forged_or_broken_token_gets_401_problem_never_5xx(tmp_path, issuer, signing_key) -> None:
    impostor = SigningKey.generate("RS256", kid=signing_key.kid)
    now = int(time.time())
    cases = {
        "alg none": (issuer.unsigned_token(), "only RS256 and ES256"),
        "HS256 with the public key": (issuer.hs256_with_public_key(), "only RS256 and ES256"),
        "wrong key, same kid": (issuer.token(key=impostor), "signature does not verify"),
        "expired": (issuer.token(exp=now - 300, iat=now - 900, nbf=now - 900), "expired"),
        "not yet valid": (issuer.token(nbf=now + 600), "not valid yet"),
        "wrong aud": (issuer.token(aud="api://another-app"), "another audience"),
        "wrong iss": (issuer.token(iss="https://login.microsoftonline.com/evil/v2.0"), "another issuer"),
        "missing tenant claim": (issuer.token(None), "no 'tenant' claim"),
        "garbage": ("eyJhbGciOiJSUzI1NiJ9.garbage.garbage", "not a well-formed JWT"),
        "basic auth": ("", "must be 'Bearer <credential>'"),
    }
    async with gateway_stack(tmp_path, Auth=issuer.settings()) as stack:
        for name, (token, reason) in cases.items():
            headers = bearer(token) if token else {"Authorization": "Basic dXNlcjpwYXNz"}
            response = await stack.client.get("/openai/echo?value=1", headers=headers)
            assert_problem(response, 401, reason, token)
            chat = await stack.client.post("/openai/chat", json=QUESTION, headers=headers)
            assert chat.status_code == 401, name
        assert stack.alpha.stats.requests + stack.beta.stats.requests == 0


async def test_key_rotation_at_the_issuer_is_picked_up(tmp_path, issuer) -> None:
    async with gateway_stack(tmp_path, Auth=issuer.settings(RefreshIntervalSeconds=0)) as stack:
        first = await stack.client.get("/openai/echo?value=1", headers=bearer(issuer.token("contoso")))
        rotated = SigningKey.generate("ES256")
        issuer.keys.append(rotated)
        second = await stack.client.get("/openai/echo?value=2", headers=bearer(issuer.token("contoso", key=rotated)))
    assert (first.text, second.text) == ("tenant: contoso value: 1", "tenant: contoso value: 2")
    assert issuer.jwks_hits == 2


async def test_jwks_down_is_503_naming_the_issuer(tmp_path, issuer) -> None:
    token = issuer.token("contoso")
    issuer.status = 503
    async with gateway_stack(tmp_path, Auth=issuer.settings()) as stack:
        response = await stack.client.get("/openai/echo?value=1", headers=bearer(token))
        issuer.status = 200
        await issuer.stop()  # unreachable altogether
        again = await stack.client.post("/openai/chat", json=QUESTION, headers=bearer(token))
    body = assert_problem(response, 503, issuer.issuer, token)
    assert body["title"] == "Identity provider unavailable" and int(response.headers["retry-after"]) >= 1
    assert_problem(again, 503, issuer.issuer, token)


async def test_unknown_tenants_are_folded_in_metrics_when_auth_is_on(tmp_path, issuer) -> None:
    async with gateway_stack(tmp_path, Auth=issuer.settings(),
                             Prometheus={"KnownTenants": "initech"}) as stack:
        for tenant in ("contoso", "initech", "invented-1", "invented-2"):
            ok = await stack.client.post("/openai/chat", json=QUESTION, headers=bearer(issuer.token(tenant)))
            assert ok.status_code == 200
        tokens = billed((await stack.client.get("/metrics")).text)
    assert set(tokens) == {"contoso", "initech", "other"}


@pytest.fixture
def keys() -> dict[str, tuple[str, str]]:
    return {t: new_tenant_key(t) for t in ("acme", "acme-next", "fabrikam", "metrics")}


def keys_auth(keys: dict[str, tuple[str, str]], mode: str = "keys") -> dict[str, Any]:
    return {"Mode": mode, "MetricsKey": keys["metrics"][1],
            "Keys": {"Acme": f"{keys['acme'][1]};{keys['acme-next'][1]}", "fabrikam": keys["fabrikam"][1]}}


async def test_tenant_keys_as_api_key_or_bearer_with_rotation_billed_to_the_key_tenant(tmp_path, keys) -> None:
    async with gateway_stack(tmp_path, Auth=keys_auth(keys)) as stack:
        by_api_key = await stack.client.post("/openai/chat", json=QUESTION, headers={"api-key": keys["acme"][0]})
        by_bearer = await stack.client.post("/openai/chat", json=QUESTION, headers=bearer(keys["acme-next"][0]))
        same = await stack.client.get("/openai/echo?tenant=ACME&value=1", headers={"api-key": keys["acme"][0]})
        other = await stack.client.get("/openai/echo?tenant=fabrikam&value=1", headers={"api-key": keys["acme"][0]})
        unknown = await stack.client.post("/openai/chat", json=QUESTION, headers={"api-key": "gwk_" + "x" * 40})
        nothing = await stack.client.post("/openai/chat?tenant=acme", json=QUESTION)
        page = await stack.client.get("/metrics", headers=bearer(keys["metrics"][0]))
        no_metrics = await stack.client.get("/metrics")
        tenant_key_for_metrics = await stack.client.get("/metrics", headers=bearer(keys["acme"][0]))
    assert (by_api_key.status_code, by_bearer.status_code, same.text) == (200, 200, "tenant: acme value: 1")
    assert_problem(other, 403, "names another tenant", keys["acme"][0])
    assert_problem(unknown, 401, "unknown API key")
    assert_problem(nothing, 401, "no credentials")
    assert page.status_code == 200
    assert set(billed(page.text)) == {"acme"}
    assert_problem(no_metrics, 401, "Auth:MetricsKey")
    assert_problem(tenant_key_for_metrics, 401, "Auth:MetricsKey", keys["acme"][0])


async def test_jwt_and_keys_together_decide_by_shape(tmp_path, issuer, keys) -> None:
    auth = {**keys_auth(keys, "jwt,keys"), "Jwt": issuer.settings()["Jwt"]}
    async with gateway_stack(tmp_path, Auth=auth) as stack:
        by_jwt = await stack.client.get("/openai/echo?value=1", headers=bearer(issuer.token("fabrikam")))
        by_key = await stack.client.get("/openai/echo?value=1", headers=bearer(keys["acme"][0]))
        forged = await stack.client.get("/openai/echo?value=1", headers=bearer(issuer.unsigned_token("acme")))
    assert (by_jwt.text, by_key.text) == ("tenant: fabrikam value: 1", "tenant: acme value: 1")
    assert_problem(forged, 401, "only RS256 and ES256")



async def test_garbage_keys_are_401_never_5xx_and_the_stored_hash_is_not_a_key(tmp_path, keys) -> None:
    garbage = {
        "empty api-key": {"api-key": ""},
        "bearer without a value": {"Authorization": "Bearer"},
        "the stored hash sent as the key": {"api-key": keys["acme"][1]},
        "the hash's hex sent as the key": {"Authorization": f"Bearer {keys['acme'][1].removeprefix('sha256:')}"},
        "8 KiB of junk": {"api-key": "k" * 8192},
        "a key for a JWT-only shape": {"Authorization": "Bearer a.b.c"},
    }
    async with gateway_stack(tmp_path, Auth=keys_auth(keys)) as stack:
        for name, headers in garbage.items():
            response = await stack.client.post("/openai/chat", json=QUESTION, headers=headers)
            assert response.status_code == 401, name
            assert response.headers["content-type"] == "application/problem+json", name
            sent = [v.removeprefix("Bearer ").strip() for v in headers.values()]
            assert not [v for v in sent if len(v) >= 8 and v in response.text], name  # never echoed
        assert stack.alpha.stats.requests + stack.beta.stats.requests == 0


async def test_entra_shaped_tokens_with_app_roles_as_the_tenant(tmp_path, issuer) -> None:
    """An Entra ID v2 access token's shape (``ver``, ``tid``, ``azp``, ``roles``) with TenantClaim=roles."""
    entra = {"ver": "2.0", "tid": "00000000-0000-0000-0000-0000000000aa", "azp": "client-app-id", "oid": "sp-1"}
    async with gateway_stack(tmp_path, Auth=issuer.settings(TenantClaim="roles")) as stack:
        one = await stack.client.post("/openai/chat", json=QUESTION,
                                      headers=bearer(issuer.token(None, roles=["Fabrikam"], **entra)))
        two = await stack.client.get("/openai/echo?value=1",
                                     headers=bearer(issuer.token(None, roles=["contoso", "fabrikam"], **entra)))
        none = await stack.client.get("/openai/echo?value=1", headers=bearer(issuer.token(None, **entra)))
    assert one.status_code == 200 and one.headers["x-gateway-instance"] == "BetaOpenAI"
    assert_problem(two, 401, "no 'roles' claim naming one tenant")
    assert_problem(none, 401, "no 'roles' claim naming one tenant")
