"""Tenant resolution: query ``tenant``, then header ``X-Tenant``, then the ``tenant`` claim of a JWT."""

from __future__ import annotations

import re
from typing import Protocol

import jwt

from .._errors import InvalidRequest, Unauthenticated

TENANT_PATTERN = re.compile(r"^[a-z0-9._-]{1,64}$")


class ClaimsReader(Protocol):
    """Turns a bearer token into its claims; the seam where signature validation plugs in."""

    def claims(self, token: str) -> dict[str, object]: ...


class UnverifiedClaims:
    """Reads claims without checking the signature: use only behind a gateway that validated it.

    The JWT validation issue replaces this with a JWKS-backed reader; the resolver does not change.
    """

    def claims(self, token: str) -> dict[str, object]:
        try:
            decoded = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthenticated(
                "the bearer token is not a well-formed JWT; send a JWT with a 'tenant' claim"
            ) from None
        return dict(decoded)


def normalise_tenant(raw: str, source: str) -> str:
    """``raw`` trimmed and lower-cased, or :class:`InvalidRequest` saying what is wrong.

    Non-ASCII is refused *before* lower-casing: ``str.lower`` folds the Kelvin sign (U+212A) into
    ``k`` and would let ``\u212aontoso`` bill ``kontoso``. Names made only of dots (``.``, ``..``)
    are refused too: they read as paths in logs, tables and dashboards.
    """
    tenant = raw.strip()
    if not tenant:
        raise InvalidRequest(f"the tenant from {source} is empty")
    if not tenant.isascii():
        raise InvalidRequest(f"the tenant from {source} must be ASCII (letters, digits, '.', '_', '-')")
    tenant = tenant.lower()
    if len(tenant) > 64:
        raise InvalidRequest(f"the tenant from {source} is longer than 64 characters")
    if not TENANT_PATTERN.match(tenant):
        raise InvalidRequest(
            f"the tenant from {source} may contain only letters, digits, '.', '_' and '-'"
        )
    if not tenant.strip("."):
        raise InvalidRequest(f"the tenant from {source} cannot be made only of dots")
    return tenant


def resolve_tenant(
    *,
    query: str | None,
    header: str | None,
    authorization: str | None,
    claims_reader: ClaimsReader | None = None,
) -> str:
    """The request's tenant, normalised (trimmed, lower-case) and validated."""
    if query is not None:
        return normalise_tenant(query, "the 'tenant' query parameter")
    if header is not None:
        return normalise_tenant(header, "the X-Tenant header")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <JWT>'")
        claims = (claims_reader or UnverifiedClaims()).claims(token.strip())
        tenant = claims.get("tenant")
        if not isinstance(tenant, str):
            raise Unauthenticated("the bearer token has no 'tenant' claim")
        return normalise_tenant(tenant, "the token's 'tenant' claim")
    raise InvalidRequest(
        "no tenant given; pass it as ?tenant=<name>, an X-Tenant header, "
        "or a bearer JWT with a 'tenant' claim"
    )
