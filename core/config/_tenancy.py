"""Sections about tenants: who they are (``Auth``), how much they may use (``Limits``), what it
costs (``Ledger``, ``Pricing``), and the traces of their requests (``Telemetry``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from .._errors import ConfigurationError
from ._base import _Section

_LOOPBACK_HTTP = re.compile(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")
_TENANT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
KEY_HASH = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
AUTH_MODES = ("none", "jwt", "keys", "jwt,keys")


class JwtSettings(_Section):
    """``Auth:Jwt:*`` — who issues the bearer JWTs and which claim names the tenant."""

    issuer: str = ""
    audience: str = ""
    jwks_uri: str = ""  # empty: discovered from <Issuer>/.well-known/openid-configuration
    tenant_claim: str = Field(default="tenant", min_length=1)
    clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    # At most one JWKS fetch per interval for unknown 'kid's (rotation), so garbage cannot hammer the issuer.
    refresh_interval_seconds: float = Field(default=30.0, ge=0, le=3600)
    # A value of the token's ``roles`` claim (an Entra app role) that may read every tenant's usage.
    admin_role: str = ""

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, value: str) -> str:
        """https, or http to a loopback host only (a local test issuer): keys fetched over plain
        http elsewhere could be swapped in transit, and with them who is which tenant."""
        value = value.strip()
        if value and not re.match(r"^https://[^\s/]+", value) and not _LOOPBACK_HTTP.match(value):
            raise ValueError("must be an https URL such as https://login.microsoftonline.com/<tenant-id>/v2.0 "
                             "(plain http only for 127.0.0.1 / localhost)")
        return value


class AuthSettings(_Section):
    """``Auth:*`` — who the caller is. ``Mode`` is normalised to one of :data:`AUTH_MODES`.

    ``Keys:<tenant>`` and ``MetricsKey`` hold only SHA-256 hashes (``sha256:<64 hex>``, several
    separated by ``;`` during a rotation); they are SecretStr so that no repr or log shows them.
    """

    mode: str = "none"
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    keys: dict[str, SecretStr] = Field(default_factory=dict)
    metrics_key: SecretStr = SecretStr("")
    # Finance / operators: read every tenant's usage (GET /admin/usage). Hashes, like Keys.
    admin_keys: SecretStr = SecretStr("")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = sorted({p.strip().lower() for p in value.split(",") if p.strip()})
        mode = ",".join(parts) or "none"
        if mode not in AUTH_MODES:
            raise ValueError("must be none, jwt, keys or jwt,keys")
        return mode

    @property
    def modes(self) -> frozenset[str]:
        return frozenset() if self.mode == "none" else frozenset(self.mode.split(","))


class TenantLimitSettings(_Section):
    """``Limits:Tenants:<tenant>`` and ``Limits:Default``: 0 or absent = unlimited.

    ``TokensPerDay`` / ``TokensPerMonth`` are quotas per UTC day and month (``core.limits._quota``).
    """

    tokens_per_minute: int = Field(default=0, ge=0)
    requests_per_minute: int = Field(default=0, ge=0)
    tokens_per_day: int = Field(default=0, ge=0)  # UTC day (docs/ledger.md: quotas)
    tokens_per_month: int = Field(default=0, ge=0)  # UTC calendar month


class LimitsSettings(_Section):
    """``Limits:*`` — per-tenant budgets shared by every replica (docs/limits.md)."""

    tenants: dict[str, TenantLimitSettings] = Field(default_factory=dict)
    default: TenantLimitSettings = Field(default_factory=TenantLimitSettings)
    window_seconds: int = Field(default=60, ge=1, le=3600)
    on_store_failure: Literal["allow", "deny"] = "allow"

    @field_validator("on_store_failure", mode="before")
    @classmethod
    def _lower_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("tenants", mode="after")
    @classmethod
    def _normalise_tenants(cls, value: dict[str, TenantLimitSettings]) -> dict[str, TenantLimitSettings]:
        return {k.strip().lower(): v for k, v in value.items()}


class LedgerSettings(_Section):
    """``Ledger:*`` — the usage ledger (Table storage with ``StateStore:Type=table``, else memory)."""

    enabled: bool = True
    flush_seconds: float = Field(default=10.0, gt=0, le=3600)
    table_name: str = "gatewayledger"
    timeout_seconds: float = Field(default=10.0, gt=0)


class PriceSettings(_Section):
    """``Pricing:<model>:{PromptPer1K, CompletionPer1K}`` — price per 1,000 tokens, any currency."""

    prompt_per1k: float = Field(default=0.0, ge=0)
    completion_per1k: float = Field(default=0.0, ge=0)


class TelemetrySettings(_Section):
    """``Telemetry:*`` — traces and logs to Application Insights (on when the standard
    ``APPLICATIONINSIGHTS_CONNECTION_STRING`` variable is set)."""

    use_entra: bool = False  # ingest with a managed identity (Entra), not the instrumentation key
    managed_identity_client_id: str = ""  # user-assigned identity; empty = system-assigned
    capture_content: bool = False  # prompt and completion text on the spans (gen_ai.*.messages)
    live_metrics: bool = False  # Live Metrics stream (sends data continuously; off by default)
    # The span export process's CPU scheduling (Linux): "idle" runs it only on CPU time nothing
    # else wants (serving first; spans dropped and counted if it falls behind), "normal" like the gateway.
    export_priority: Literal["idle", "normal"] = "idle"

    @field_validator("export_priority", mode="before")
    @classmethod
    def _lower_priority(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def check_auth(auth: AuthSettings) -> None:
    """What one field cannot say: required keys per mode, and the hash format (never echoed)."""
    if "jwt" in auth.modes:
        required = (("Issuer", auth.jwt.issuer, "https://login.microsoftonline.com/<tenant-id>/v2.0"),
                    ("Audience", auth.jwt.audience, "the gateway app's client id"))
        for key, value, example in required:
            if not value.strip():
                problem = f"is required when Auth:Mode is {auth.mode} (e.g. {example})"
                raise ConfigurationError(f"Auth:Jwt:{key}", problem)
    hint = "generate one with: python -m clients.cli keygen <tenant>"
    shape = "must be sha256:<64 hex digits>[;sha256:<64 hex digits>]"
    for tenant, secret in auth.keys.items():
        name = tenant.strip()  # the full rule (core.access.normalise_tenant) runs again at build
        if not name.isascii() or not _TENANT_NAME.match(name) or not name.strip("."):
            raise ConfigurationError(f"Auth:Keys:{tenant}", "the tenant name must be ASCII letters, digits, "
                                     "'.', '_' or '-' (at most 64, not only dots)")
        hashes = [h.strip() for h in secret.get_secret_value().split(";") if h.strip()]
        if not hashes or not all(KEY_HASH.match(h) for h in hashes):
            raise ConfigurationError(f"Auth:Keys:{tenant}", f"{shape}; {hint}")
    for key, secret in (("Auth:MetricsKey", auth.metrics_key), ("Auth:AdminKeys", auth.admin_keys)):
        hashes = [h.strip() for h in secret.get_secret_value().split(";") if h.strip()]
        if not all(KEY_HASH.match(h) for h in hashes):
            raise ConfigurationError(key, f"{shape}; {hint} --metrics")
    if "keys" in auth.modes and not auth.keys:
        raise ConfigurationError("Auth:Keys", f"no tenant key is configured but Auth:Mode is {auth.mode}; "
                                 f"set Auth:Keys:<tenant>=sha256:<hex> ({hint})")
