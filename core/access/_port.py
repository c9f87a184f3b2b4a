"""The one outside system of ``core.access``: the token issuer's HTTP endpoints (OIDC discovery, JWKS)."""

from __future__ import annotations

from typing import Protocol


class JsonFetcher(Protocol):
    """GETs a small JSON document. Raises :class:`core.AuthUnavailable` when it cannot (network
    error, timeout, non-200, not JSON), with a reason that names no secret."""

    async def get_json(self, url: str) -> object: ...

    async def aclose(self) -> None: ...
