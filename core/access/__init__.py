"""Who the caller is (issue 10): credentials in, an authenticated tenant or a gateway error out.

No HTTP or gRPC here: hosts pass plain values (:class:`Credentials`) through ``Gateway.authenticate``.
The JWKS fetcher's adapter (``_http.AiohttpJsonFetcher``) is imported by ``core._build`` only when
``Auth:Mode`` includes ``jwt``, so ``import core`` loads no HTTP client.
"""

from ._authenticator import Authenticator, Credentials
from ._jwks import ALGORITHMS, JwksKeys
from ._jwt import JwtVerifier
from ._keys import KeyRing, digest_of, parse_hashes
from ._port import JsonFetcher
from ._tenants import normalise_tenant, resolve_tenant

__all__ = [
    "ALGORITHMS",
    "Authenticator",
    "Credentials",
    "JsonFetcher",
    "JwksKeys",
    "JwtVerifier",
    "KeyRing",
    "digest_of",
    "normalise_tenant",
    "parse_hashes",
    "resolve_tenant",
]
