"""Bearer JWTs: signature (RS256/ES256 from the issuer's JWKS), ``exp``/``nbf``/``iss``/``aud``,
then the tenant claim. Verified tokens are cached until their ``exp``, keyed by SHA-256 of the token.

The algorithm list is never the token's choice: only RS256 and ES256 are accepted, and the key the
``kid`` names must be of that algorithm (so ``alg: none`` and HS256-signed-with-the-public-key are
refused before any verification).

Entra ID: set ``Issuer`` to the v2 issuer ``https://login.microsoftonline.com/<tenant-id>/v2.0``
(the app registration's manifest needs ``"requestedAccessTokenVersion": 2``, else Entra issues v1
tokens whose ``iss`` is ``https://sts.windows.net/<tenant-id>/``), ``Audience`` to the gateway
app's client id, and ``TenantClaim`` to ``roles`` (app roles: each client app is assigned exactly
one role, whose value is its tenant) or to a custom claim (a claims-mapping policy or an
``extension_*`` attribute). A list-valued claim must hold exactly one entry.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable

import jwt

from .._errors import InvalidRequest, Unauthenticated
from ._jwks import ALGORITHMS, JwksKeys
from ._tenants import normalise_tenant

_PRINTABLE_ALG = re.compile(r"^[A-Za-z0-9]{1,12}$")

# PyJWT's exceptions, most specific first, as sentences that never repeat the token.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired; get a new one"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf/iat in the future)"),
    (jwt.InvalidAudienceError, "the token is for another audience (aud); expected {audience}"),
    (jwt.InvalidIssuerError, "the token comes from another issuer (iss); expected {issuer}"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, iss and aud are required)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify with the issuer's key"),
    (jwt.DecodeError, "the bearer token is not a well-formed JWT"),
)


class JwtVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        tenant_claim: str,
        leeway_seconds: float,
        keys: JwksKeys,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._claim = tenant_claim
        self._leeway = leeway_seconds
        self._keys = keys
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    async def tenant(self, token: str) -> str:
        """The tenant the token was issued for; :class:`Unauthenticated` saying why not."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if self._clock() < cached[1]:
                self._cache.move_to_end(digest)
                return cached[0]
            del self._cache[digest]
        claims = await self._verified_claims(token)
        tenant = self._tenant_of(claims)
        exp = claims["exp"]
        if isinstance(exp, (int, float)):  # PyJWT checked it is a number
            self._cache[digest] = (tenant, float(exp))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tenant

    async def roles(self, token: str) -> frozenset[str]:
        """The ``roles`` claim of a verified token (Entra app roles); :class:`Unauthenticated` if invalid."""
        value = (await self._verified_claims(token)).get("roles")
        if isinstance(value, str):
            return frozenset({value})
        return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()

    async def aclose(self) -> None:
        await self._keys.aclose()

    async def _verified_claims(self, token: str) -> dict[str, object]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            shown = f"'{alg}'" if isinstance(alg, str) and _PRINTABLE_ALG.match(alg) else "an unsupported algorithm"
            raise Unauthenticated(f"the token is signed with {shown}; only RS256 and ES256 are accepted")
        kid = header.get("kid")
        key = await self._keys.key_for(kid if isinstance(kid, str) else None)
        if key.algorithm_name != alg:
            raise Unauthenticated(f"the token says {alg} but its key (kid) is for {key.algorithm_name}")
        try:
            claims: dict[str, object] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self._audience, issuer=self._issuer,
                leeway=self._leeway, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            reason = next((text for cls, text in _REASONS if isinstance(exc, cls)), "the token is not valid")
            raise Unauthenticated(reason.format(audience=self._audience, issuer=self._issuer)) from None
        return claims

    def _tenant_of(self, claims: dict[str, object]) -> str:
        value = claims.get(self._claim)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str):
            raise Unauthenticated(f"the token has no '{self._claim}' claim naming one tenant "
                                  "(Auth:Jwt:TenantClaim)")
        try:
            return normalise_tenant(value, f"the token's '{self._claim}' claim")
        except InvalidRequest as exc:
            raise Unauthenticated(exc.detail) from None
