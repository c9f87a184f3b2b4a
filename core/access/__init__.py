"""Who the caller is: the tenant a request acts and is billed as."""

from ._tenants import normalise_tenant, resolve_tenant

__all__ = ["normalise_tenant", "resolve_tenant"]
