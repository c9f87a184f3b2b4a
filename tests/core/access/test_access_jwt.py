"""Bearer JWTs checked against a real local issuer (OIDC discovery + JWKS over HTTP, keys made now)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import jwt
import pytest
from auth_support import AUDIENCE, Issuer, SigningKey

from core import AuthUnavailable, Unauthenticated
from core.access import JwksKeys, JwtVerifier
from core.access._http import AiohttpJsonFetcher


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.fixture
async def issuer(rsa_key: SigningKey) -> AsyncIterator[Issuer]:
    server = await Issuer([rsa_key]).start()
    yield server
    await server.stop()


def verifier(issuer: Issuer, *, interval: float = 0.0, claim: str = "tenant", leeway: float = 0,
             jwks_uri: str = "") -> JwtVerifier:
    keys = JwksKeys(issuer.issuer, AiohttpJsonFetcher(timeout_seconds=2), jwks_uri=jwks_uri,
                    refresh_interval_seconds=interval)
    return JwtVerifier(issuer=issuer.issuer, audience=AUDIENCE, tenant_claim=claim, leeway_seconds=leeway, keys=keys)


async def test_a_valid_token_names_its_tenant_and_keys_come_from_discovery(issuer: Issuer) -> None:
    check = verifier(issuer)
    assert await check.tenant(issuer.token("Contoso")) == "contoso"
    assert (issuer.discovery_hits, issuer.jwks_hits) == (1, 1)
    await check.aclose()


async def test_es256_tokens_are_accepted(issuer: Issuer) -> None:
    ec_key = SigningKey.generate("ES256")
    issuer.keys.append(ec_key)
    check = verifier(issuer)
    assert await check.tenant(issuer.token("fabrikam", key=ec_key)) == "fabrikam"
    await check.aclose()


def _bad_tokens(issuer: Issuer, rsa_key: SigningKey) -> dict[str, tuple[str, str]]:
    impostor = SigningKey.generate("RS256", kid=rsa_key.kid)  # same kid, another private key
    ec_key = SigningKey.generate("ES256", kid=rsa_key.kid)
    now = int(time.time())
    return {
        "alg none": (issuer.unsigned_token(), "only RS256 and ES256"),
        "HS256 signed with the public key": (issuer.hs256_with_public_key(), "'HS256'; only RS256 and ES256"),
        "wrong key, same kid": (issuer.token(key=impostor), "signature does not verify"),
        "ES256 header on an RSA kid": (issuer.token(key=ec_key), "is for RS256"),
        "expired": (issuer.token(exp=now - 120, iat=now - 700, nbf=now - 700), "expired"),
        "not yet valid": (issuer.token(nbf=now + 300), "not valid yet"),
        "wrong audience": (issuer.token(aud="api://someone-else"), f"expected {AUDIENCE}"),
        "wrong issuer": (issuer.token(iss="https://login.microsoftonline.com/other/v2.0"),
                         f"expected {issuer.issuer}"),
        "no exp": (issuer.token(exp=None), "lacks a required claim"),
        "missing tenant claim": (issuer.token(None), "no 'tenant' claim"),
        "tenant claim with a Kelvin sign": (issuer.token("\u212aontoso"), "must be ASCII"),
        "garbage": ("not.a.jwt", "not a well-formed JWT"),
        "unknown kid": (issuer.token(kid="kid-nobody-published"), "unknown 'kid'"),
    }


async def test_every_forged_or_broken_token_is_refused_saying_why(issuer: Issuer, rsa_key: SigningKey) -> None:
    check = verifier(issuer)
    for name, (token, reason) in _bad_tokens(issuer, rsa_key).items():
        with pytest.raises(Unauthenticated) as info:
            await check.tenant(token)
        assert reason in info.value.detail, name
        signature = token.split(".")[-1][:16]
        assert token not in info.value.detail and (not signature or signature not in info.value.detail), name
    await check.aclose()


async def test_clock_skew_is_tolerated_up_to_the_leeway(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.token(exp=now - 30, iat=now - 600, nbf=now - 600)
    assert await verifier(issuer, leeway=60).tenant(token) == "contoso"
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier(issuer, leeway=0).tenant(token)


async def test_rotation_a_new_kid_is_fetched_once(issuer: Issuer) -> None:
    check = verifier(issuer, interval=0)
    assert await check.tenant(issuer.token()) == "contoso"
    rotated = SigningKey.generate("RS256")
    issuer.keys.append(rotated)
    assert await check.tenant(issuer.token("fabrikam", key=rotated)) == "fabrikam"
    assert issuer.jwks_hits == 2
    await check.aclose()


async def test_garbage_kids_cannot_hammer_the_issuer(issuer: Issuer) -> None:
    check = verifier(issuer, interval=60)
    assert await check.tenant(issuer.token()) == "contoso"
    tokens = [issuer.token(kid=f"garbage-{i}") for i in range(50)]
    results = await asyncio.gather(*(check.tenant(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert issuer.jwks_hits == 1  # the interval since the last fetch has not passed: no refetch at all
    await check.aclose()


async def test_concurrent_first_requests_share_one_fetch(issuer: Issuer) -> None:
    check = verifier(issuer, interval=60)
    tenants = await asyncio.gather(*(check.tenant(issuer.token(f"t{i}")) for i in range(20)))
    assert tenants == [f"t{i}" for i in range(20)]
    assert issuer.jwks_hits == 1
    await check.aclose()


@pytest.mark.parametrize("failure", ["HTTP 503", "connection refused"])
async def test_jwks_unreachable_is_unavailable_naming_the_issuer_and_never_allows(
    issuer: Issuer, failure: str
) -> None:
    token = issuer.token()
    check = verifier(issuer, interval=60, jwks_uri=issuer.jwks_uri)
    if failure == "HTTP 503":
        issuer.status = 503
    else:
        await issuer.stop()
    with pytest.raises(AuthUnavailable) as info:
        await check.tenant(token)
    assert issuer.issuer in info.value.detail
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    hits = issuer.jwks_hits
    with pytest.raises(AuthUnavailable):  # within the interval: answered without asking again
        await check.tenant(token)
    assert issuer.jwks_hits == hits
    await check.aclose()


async def test_cached_keys_survive_an_issuer_outage(issuer: Issuer) -> None:
    check = verifier(issuer, interval=0)
    assert await check.tenant(issuer.token("a")) == "a"
    issuer.status = 503
    assert await check.tenant(issuer.token("b")) == "b"  # known kid: no fetch needed
    with pytest.raises(AuthUnavailable):  # unknown kid and the issuer is down: cannot tell, 503
        await check.tenant(issuer.token(kid="kid-new"))
    await check.aclose()


async def test_a_verified_token_is_not_cached_past_its_exp(issuer: Issuer) -> None:
    check = verifier(issuer)
    token = issuer.token(lifetime=4)  # roomy: a loaded machine must still verify it before it expires
    assert await check.tenant(token) == "contoso"
    assert await check.tenant(token) == "contoso"  # cached
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.3)  # just past exp: the cache must not answer
    with pytest.raises(Unauthenticated, match="expired"):
        await check.tenant(token)
    await check.aclose()


async def test_entra_app_roles_as_the_tenant_claim(issuer: Issuer) -> None:
    check = verifier(issuer, claim="roles")
    assert await check.tenant(issuer.token(None, roles=["Contoso"])) == "contoso"
    with pytest.raises(Unauthenticated, match="no 'roles' claim naming one tenant"):
        await check.tenant(issuer.token(None, roles=["contoso", "fabrikam"]))
    await check.aclose()


async def test_keys_are_refreshed_after_an_hour_and_a_failed_refresh_keeps_them(issuer: Issuer) -> None:
    now = [1000.0]
    keys = JwksKeys(issuer.issuer, AiohttpJsonFetcher(timeout_seconds=2), refresh_interval_seconds=30,
                    max_age_seconds=3600, clock=lambda: now[0])
    check = JwtVerifier(issuer=issuer.issuer, audience=AUDIENCE, tenant_claim="tenant", leeway_seconds=0, keys=keys)
    assert await check.tenant(issuer.token("a")) == "a"
    now[0] += 3599
    assert await check.tenant(issuer.token("b")) == "b"
    assert issuer.jwks_hits == 1  # still fresh
    now[0] += 2
    assert await check.tenant(issuer.token("c")) == "c"
    assert issuer.jwks_hits == 2  # an hour old: fetched again
    now[0] += 3601
    issuer.status = 500
    assert await check.tenant(issuer.token("d")) == "d"  # refresh failed: the cached keys still work
    assert issuer.jwks_hits == 3
    assert await check.tenant(issuer.token("e")) == "e"
    assert issuer.jwks_hits == 3  # and the failed refresh is not retried before the interval
    await check.aclose()


@pytest.mark.parametrize(
    ("body", "delay", "reason"),
    [("<html>oops</html>", 0.0, "did not return JSON"), ('{"keys": []}', 0.0, "no usable signing key"),
     ('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}', 0.0, "no usable signing key"),
     ('{"nokeys": 1}', 0.0, "not a JWK Set"), (None, 3.0, "timed out")],
    ids=["not json", "empty set", "only an HMAC key", "no keys member", "hangs"],
)
async def test_a_broken_or_hanging_jwks_is_unavailable_never_allow(
    issuer: Issuer, body: str | None, delay: float, reason: str
) -> None:
    issuer.body, issuer.delay = body, delay
    keys = JwksKeys(issuer.issuer, AiohttpJsonFetcher(timeout_seconds=0.5), jwks_uri=issuer.jwks_uri)
    check = JwtVerifier(issuer=issuer.issuer, audience=AUDIENCE, tenant_claim="tenant", leeway_seconds=0, keys=keys)
    with pytest.raises(AuthUnavailable) as info:
        await check.tenant(issuer.token())
    assert reason in info.value.detail and issuer.issuer in info.value.detail
    await check.aclose()
