"""A real local token issuer for the auth tests: OIDC discovery + JWKS over HTTP on 127.0.0.1, with
RSA and EC keys generated at test time (cryptography), and tokens minted with PyJWT.

Every key, token and key hash made here is registered with the suite-wide secret scan.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from secret_scan import register_secret

AUDIENCE = "api://gateway-tests"


@dataclass
class SigningKey:
    kid: str
    alg: str  # RS256 | ES256
    private: Any

    @classmethod
    def generate(cls, alg: str = "RS256", kid: str | None = None) -> SigningKey:
        private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256"
                   else ec.generate_private_key(ec.SECP256R1()))
        return cls(kid or f"kid-{secrets.token_hex(4)}", alg, private)

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Issuer:
    """``<url>/tid/v2.0`` is the issuer (Entra-shaped); discovery and JWKS are served under it."""

    keys: list[SigningKey]
    status: int = 200  # what the JWKS endpoint answers; 200 serves the keys
    body: str | None = None  # served instead of the key set (a broken JWKS)
    delay: float = 0.0  # seconds before the JWKS endpoint answers (a hanging issuer)
    jwks_hits: int = 0
    discovery_hits: int = 0
    url: str = ""
    _runner: web.AppRunner | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"{self.url}/tid/v2.0"

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/tid/discovery/v2.0/keys"

    async def start(self) -> Issuer:
        async def discovery(_: web.Request) -> web.Response:
            self.discovery_hits += 1
            return web.json_response({"issuer": self.issuer, "jwks_uri": self.jwks_uri})

        async def jwks(_: web.Request) -> web.Response:
            self.jwks_hits += 1
            await asyncio.sleep(self.delay)
            if self.body is not None:
                return web.Response(status=self.status, text=self.body, content_type="application/json")
            if self.status != 200:
                return web.Response(status=self.status, text="unavailable")
            return web.json_response({"keys": [k.jwk() for k in self.keys]})

        app = web.Application()
        app.router.add_get("/tid/v2.0/.well-known/openid-configuration", discovery)
        app.router.add_get("/tid/discovery/v2.0/keys", jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def settings(self, **jwt_overrides: Any) -> dict[str, Any]:
        """The ``Auth`` section for this issuer (JWKS discovered, no JwksUri)."""
        return {"Mode": "jwt", "Jwt": {"Issuer": self.issuer, "Audience": AUDIENCE, **jwt_overrides}}

    def token(self, tenant: str | None = "contoso", *, key: SigningKey | None = None, kid: str | None = None,
              lifetime: float = 600, **claims: Any) -> str:
        """A token signed by ``key`` (default: the first published key) with sane claims."""
        key = key or self.keys[0]
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "aud": AUDIENCE, "sub": "client-1", "iat": now,
                                   "nbf": now, "exp": int(now + lifetime)}
        if tenant is not None:
            payload["tenant"] = tenant
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        token = jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": kid or key.kid})
        return secret(token, "a test JWT")

    def unsigned_token(self, tenant: str = "contoso") -> str:
        """``alg: none``: claims without a signature."""
        header = {"alg": "none", "typ": "JWT", "kid": self.keys[0].kid}
        return secret(f"{_b64(header)}.{_b64(self._claims(tenant))}.", "an alg-none JWT")

    def hs256_with_public_key(self, tenant: str = "contoso") -> str:
        """The key-confusion attack: HMAC-SHA256 keyed with the issuer's *public* key PEM."""
        key = self.keys[0]
        signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}.{_b64(self._claims(tenant))}"
        mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return secret(f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}", "an HS256 JWT")

    def _claims(self, tenant: str) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.issuer, "aud": AUDIENCE, "tenant": tenant, "iat": now, "exp": now + 600}


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def secret(value: str, label: str) -> str:
    """Register ``value`` (and, for a JWT, its signature alone) with the secret scan."""
    register_secret(value, label)
    signature = value.rsplit(".", 1)[-1]
    if value.count(".") == 2 and len(signature) >= 16:
        register_secret(signature, label + "'s signature")
    return value


def new_tenant_key(tenant: str) -> tuple[str, str]:
    """A tenant API key and its ``sha256:<hex>`` setting value (as ``clients.cli keygen`` makes them)."""
    key = secret("gwk_" + secrets.token_urlsafe(32), f"the API key of {tenant}")
    digest = hashlib.sha256(key.encode()).hexdigest()
    register_secret(digest, f"the key hash of {tenant}")
    return key, f"sha256:{digest}"
