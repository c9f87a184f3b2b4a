"""One gateway per process, built on first use from settings (no network I/O at import)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from core import Gateway, Settings, build_gateway, configure_telemetry, load_settings


def settings_from_environment() -> Settings:
    """Settings as the Functions host and containers give them: env vars (+ optional JSON file)."""
    return load_settings(json_path=os.environ.get("GATEWAY_CONFIG") or None)


def telemetry_from_environment() -> bool:
    """The Functions worker's Application Insights set-up, from app settings (not Key Vault: no
    network I/O at import). In the host's OpenTelemetry mode the host sends the request span and
    the gateway's spans join it; see docs/observability.md."""
    environ = {k: v for k, v in os.environ.items() if k.lower() != "keyvaultname"}
    settings = load_settings(json_path=os.environ.get("GATEWAY_CONFIG") or None, environ=environ)
    return configure_telemetry(settings, service_name="openai-gateway-functions")


def gateway_from_environment() -> LazyGateway:
    """The Functions host's gateway. Settings that need no network (no ``KeyVaultName``) are
    validated now, at import, so a bad app setting fails the host's start-up naming the key;
    with Key Vault, settings are read on the first request (no network I/O at import)."""
    uses_key_vault = any(k.lower() == "keyvaultname" and v for k, v in os.environ.items())
    return LazyGateway(settings_from_environment if uses_key_vault else settings_from_environment())


class LazyGateway:
    """Builds the gateway once, on the first request, and starts its background tasks."""

    def __init__(self, settings: Callable[[], Settings] | Settings) -> None:
        self._settings = settings
        self._gateway: Gateway | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Gateway:
        gateway = self._gateway
        if gateway is not None:
            return gateway
        async with self._lock:
            if self._gateway is None:
                settings = self._settings() if callable(self._settings) else self._settings
                built = build_gateway(settings)
                await built.start()
                self._gateway = built
            return self._gateway

    @property
    def built(self) -> Gateway | None:
        """The gateway if it was built already (no building here)."""
        return self._gateway

    async def aclose(self) -> None:
        if self._gateway is not None:
            await self._gateway.aclose()
            self._gateway = None
