"""Who the caller is: plain values in (headers, metadata, the claimed tenant), a tenant or an error out.

Hosts fill :class:`Credentials` from HTTP headers or gRPC metadata and call
``Gateway.authenticate``; nothing here knows HTTP or gRPC. The answer is a tenant name or one of
:class:`Unauthenticated` (401 / UNAUTHENTICATED), :class:`Forbidden` (403 / PERMISSION_DENIED),
:class:`InvalidRequest` (400) or :class:`AuthUnavailable` (503 / UNAVAILABLE).

``Auth:Mode``:

* ``none`` — the C# sample: the ``tenant`` query (or request field), else ``X-Tenant``, else the
  *unverified* ``tenant`` claim of a bearer JWT. Any caller can claim any tenant: local runs only.
* ``jwt`` / ``keys`` / ``jwt,keys`` — the credential decides the tenant. A key comes as
  ``api-key: <key>`` or ``Authorization: Bearer <key>``; with ``jwt,keys`` a bearer value with two
  dots is a JWT, anything else a key. A claimed tenant (query, header, field) that differs is 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import Forbidden, Unauthenticated
from ._jwt import JwtVerifier
from ._keys import KeyRing
from ._tenants import normalise_tenant, resolve_tenant


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request says about its caller, as the host received it (``None``: absent)."""

    authorization: str | None = None
    api_key: str | None = None
    tenant_query: str | None = None
    tenant_header: str | None = None
    query_source: str = "the 'tenant' query parameter"
    header_source: str = "the X-Tenant header"


class Authenticator:
    """``Auth:Mode`` applied to one request's :class:`Credentials`.

    With keys enabled an ``api-key`` header is used first; otherwise the ``Authorization`` bearer
    value (a JWT when it has two dots and ``jwt`` is on, else a key). Only one credential counts.
    """

    def __init__(
        self,
        *,
        modes: frozenset[str] = frozenset(),
        jwt: JwtVerifier | None = None,
        keys: KeyRing | None = None,
        metrics_keys: KeyRing | None = None,
        admin_keys: KeyRing | None = None,
        admin_role: str = "",
    ) -> None:
        self._jwt = jwt if "jwt" in modes else None
        self._keys = keys if "keys" in modes else None
        self._metrics_keys = metrics_keys
        self._admin_keys = admin_keys
        self._admin_role = admin_role
        self._schemes = " or ".join(
            s for s, on in (("a bearer JWT", self._jwt), ("an api-key header or bearer key", self._keys)) if on
        )

    @property
    def trusts_callers(self) -> bool:
        """Mode ``none``: the caller's claimed tenant is believed."""
        return self._jwt is None and self._keys is None

    async def authenticate(self, credentials: Credentials) -> str:
        if self.trusts_callers:
            return resolve_tenant(query=credentials.tenant_query, header=credentials.tenant_header,
                                  authorization=credentials.authorization)
        tenant = await self._authenticated_tenant(credentials)
        for claimed, source in ((credentials.tenant_query, credentials.query_source),
                                (credentials.tenant_header, credentials.header_source)):
            if claimed is not None and normalise_tenant(claimed, source) != tenant:
                raise Forbidden(f"the credentials are tenant '{tenant}' but {source} names another tenant; "
                                "drop it or name the same tenant")
        return tenant

    async def usage_scope(self, credentials: Credentials) -> str | None:
        """Whose usage the caller may read: None for every tenant, else one tenant.

        An admin (a key of ``Auth:AdminKeys``, or a JWT whose ``roles`` hold ``Auth:Jwt:AdminRole``)
        reads any tenant, or all when none is named. Any other caller is authenticated as a tenant
        and reads its own rows (naming another tenant is 403). Mode ``none`` trusts the caller.
        """
        named = credentials.tenant_query if credentials.tenant_query is not None else credentials.tenant_header
        if self.trusts_callers or await self._is_admin(credentials):
            return None if named is None else normalise_tenant(named, credentials.query_source)
        return await self.authenticate(credentials)

    async def _is_admin(self, credentials: Credentials) -> bool:
        bearer = _bearer(credentials.authorization)
        for key in (credentials.api_key, bearer):
            if key is not None and self._admin_keys is not None and self._admin_keys.tenant(key) is not None:
                return True
        if bearer is not None and self._jwt is not None and self._admin_role and bearer.count(".") == 2:
            return self._admin_role in await self._jwt.roles(bearer)
        return False

    async def aclose(self) -> None:
        if self._jwt is not None:
            await self._jwt.aclose()

    def authorize_metrics(self, authorization: str | None) -> None:
        """``Auth:MetricsKey``, when set, must come as ``Authorization: Bearer <key>``."""
        if self._metrics_keys is None:
            return
        token = _bearer(authorization)
        if token is None or self._metrics_keys.tenant(token) is None:
            raise Unauthenticated("/metrics needs 'Authorization: Bearer <metrics key>' (Auth:MetricsKey)")

    async def _authenticated_tenant(self, credentials: Credentials) -> str:
        if credentials.api_key is not None and self._keys is not None:
            return self._key_tenant(credentials.api_key)
        token = _bearer(credentials.authorization)
        if token is None:
            if credentials.authorization is not None:
                raise Unauthenticated("the Authorization header must be 'Bearer <credential>'")
            if credentials.api_key is not None:
                raise Unauthenticated(f"api-key is not accepted here (Auth:Mode=jwt); send {self._schemes}")
            raise Unauthenticated(f"no credentials; send {self._schemes}")
        if self._jwt is not None and (self._keys is None or token.count(".") == 2):
            return await self._jwt.tenant(token)
        return self._key_tenant(token)

    def _key_tenant(self, key: str) -> str:
        assert self._keys is not None
        tenant = self._keys.tenant(key)
        if tenant is None:
            raise Unauthenticated("unknown API key (it matches no Auth:Keys entry)")
        return tenant


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
