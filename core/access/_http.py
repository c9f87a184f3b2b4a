"""The :class:`JsonFetcher` adapter on aiohttp (already the gateway's HTTP client library).

Why not ``jwt.PyJWKClient``: it fetches with blocking ``urllib``, which would stall every request
on the event loop for the length of a JWKS fetch (seconds when the issuer is slow). Running it in
``asyncio.to_thread`` would work but still gives one thread per concurrent miss, no connection
reuse, and a second HTTP stack to configure. So the documents are fetched here, asynchronously
with a timeout and a size cap, and PyJWT still does all key handling (``jwt.PyJWKSet``) and all
verification (``jwt.decode``) — no crypto is written in this package.
"""

from __future__ import annotations

import json

import aiohttp

from .._errors import AuthUnavailable

MAX_DOCUMENT_BYTES = 1_048_576


class AiohttpJsonFetcher:
    def __init__(self, timeout_seconds: float = 5.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def get_json(self, url: str) -> object:
        if self._session is None:  # created on first use: no loop or network at build time
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise AuthUnavailable(f"GET {url} answered HTTP {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except TimeoutError:  # before OSError, of which it is a subclass
            raise AuthUnavailable(f"GET {url} timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AuthUnavailable(f"GET {url} failed ({type(exc).__name__})") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise AuthUnavailable(f"GET {url} returned more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise AuthUnavailable(f"GET {url} did not return JSON") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
