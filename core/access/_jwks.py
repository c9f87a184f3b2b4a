"""The issuer's signing keys: discovered, fetched, cached, refetched on rotation — never hammered.

* ``JwksUri`` unset: discovered once from ``<Issuer>/.well-known/openid-configuration``.
* The key set is cached and refreshed when older than ``max_age_seconds`` (a failed refresh keeps
  serving the keys it has, with a warning).
* A ``kid`` that is not in the cache triggers one refetch (the issuer rotated its keys), but at
  most one fetch per ``refresh_interval_seconds``: tokens with invented ``kid`` values cost the
  issuer nothing more than one request per interval, however many arrive. Concurrent misses share
  one fetch.
* The issuer unreachable and no key to decide with -> :class:`AuthUnavailable` (503 naming the
  issuer): never an "allow", never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKSetError

from .._errors import AuthUnavailable, Unauthenticated
from ._port import JsonFetcher

log = logging.getLogger("core.access")

ALGORITHMS = ("RS256", "ES256")  # the only signatures accepted; other keys in a JWKS are ignored

Clock = Callable[[], float]


class JwksKeys:
    def __init__(
        self,
        issuer: str,
        fetcher: JsonFetcher,
        *,
        jwks_uri: str = "",
        refresh_interval_seconds: float = 30.0,
        max_age_seconds: float = 3600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._fetcher = fetcher
        self._jwks_uri = jwks_uri
        self._interval = refresh_interval_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._last_failure = ""
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> PyJWK:
        """The published key with id ``kid`` (or the only key when the token names none)."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._max_age:
            await self._refresh(stale_ok=self._fetched_at is not None)
        key = self._lookup(kid)
        if key is None and self._may_fetch(self._clock()):
            await self._refresh(stale_ok=True)  # rotation: the issuer may have published a new key
            key = self._lookup(kid)
        if key is not None:
            return key
        if self._last_failure:
            raise self._unavailable()
        raise Unauthenticated("the token is signed with a key the issuer does not publish (unknown 'kid')")

    async def aclose(self) -> None:
        await self._fetcher.aclose()

    def _lookup(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._interval

    async def _refresh(self, *, stale_ok: bool) -> None:
        started = self._clock()
        async with self._lock:
            if self._attempted_at is not None and self._attempted_at >= started:
                return  # another request fetched while this one waited: share its result
            if not self._may_fetch(self._clock()) and (self._fetched_at is not None or self._last_failure):
                if self._fetched_at is None:
                    raise self._unavailable()
                return
            self._attempted_at = self._clock()
            try:
                self._keys = await self._fetch()
            except AuthUnavailable as exc:
                self._last_failure = exc.detail
                if stale_ok and self._keys:
                    log.warning("refreshing the signing keys of %s failed (%s); using the cached keys",
                                self._issuer, exc.detail)
                    return
                log.warning("cannot fetch the signing keys of %s: %s", self._issuer, exc.detail)
                raise self._unavailable() from None
            self._fetched_at = self._clock()
            self._last_failure = ""

    async def _fetch(self) -> dict[str, PyJWK]:
        uri = self._jwks_uri or await self._discover()
        document = await self._fetcher.get_json(uri)
        raw = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(raw, list):
            raise AuthUnavailable(f"{uri} is not a JWK Set (no 'keys' list)")
        try:
            key_set = PyJWKSet([k for k in raw if isinstance(k, dict) and k.get("use", "sig") == "sig"])
        except PyJWKSetError:
            raise AuthUnavailable(f"{uri} holds no usable signing key") from None
        usable = [k for k in key_set.keys if k.algorithm_name in ALGORITHMS]
        if not usable:
            raise AuthUnavailable(f"{uri} holds no usable signing key (RS256 or ES256)")
        keys = {str(k.key_id): k for k in usable if k.key_id}
        if not keys and len(usable) == 1:
            keys = {"": usable[0]}
        return keys

    async def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._fetcher.get_json(url)
        uri = document.get("jwks_uri") if isinstance(document, Mapping) else None
        schemes = ("https://", "http://") if self._issuer.startswith("http://") else ("https://",)
        if not isinstance(uri, str) or not uri.startswith(schemes):  # http only for a (loopback) http issuer
            raise AuthUnavailable(f"{url} has no https jwks_uri")
        self._jwks_uri = uri
        return uri

    def _unavailable(self) -> AuthUnavailable:
        wait = 0.0 if self._attempted_at is None else self._interval - (self._clock() - self._attempted_at)
        return AuthUnavailable(
            f"cannot check tokens of issuer {self._issuer}: its signing keys cannot be fetched "
            f"({self._last_failure}); retry shortly",
            retry_after=max(1.0, wait),
        )
