"""``RestHost:*`` settings: where the local REST server listens and what it tolerates from clients.

Read from the environment with the gateway's naming style (``RestHost__MaxHeaderBytes=16384``);
``python -m http_api`` flags override them. The Functions host does not use these: Azure's front
end enforces its own limits there.

    key                    default   what happens past it
    Host, Port             127.0.0.1:8000
    MaxHeaderBytes         32768     request line + headers larger: 431, connection closed
    HeaderTimeoutSeconds   10        headers not complete in time after the first byte: 408, closed
    BodyTimeoutSeconds     30        body not complete in time after the headers: 408, closed
    KeepAliveSeconds       5         an idle keep-alive connection is closed
    MaxConnections         1000      more concurrent connections or requests: 503 + Retry-After, closed
    MaxDrainBytes          8388608   a request answered before its body was read (413, 401, ...) has
                                     the rest of its body read and discarded up to this many bytes, so
                                     the client reads the answer instead of a reset; past it, closed
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import ConfigurationError

SECTION = "RestHost"


class RestHostSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=0, le=65535)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    max_drain_bytes: int = Field(default=8 * 1024 * 1024, ge=0, le=1024**3)


_KEYS = {name.replace("_", ""): name for name in RestHostSettings.model_fields}


def display_key(field: str) -> str:
    """``max_header_bytes`` -> ``RestHost:MaxHeaderBytes``."""
    return f"{SECTION}:" + "".join(part.capitalize() for part in field.split("_"))


def load_rest_host_settings(
    environ: Mapping[str, str], overrides: Mapping[str, object | None] | None = None
) -> RestHostSettings:
    """Merge ``RestHost__*`` variables (case-insensitive) with non-None ``overrides``.

    Raises :class:`core.ConfigurationError` naming the key, e.g. ``RestHost:MaxHeaderBytes``.
    """
    values: dict[str, object] = {}
    prefix = SECTION.lower() + "__"
    for key, value in environ.items():
        lowered = key.lower()
        if lowered.startswith(prefix) and lowered[len(prefix):] in _KEYS:
            values[_KEYS[lowered[len(prefix):]]] = value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return RestHostSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        raise ConfigurationError(display_key(field), first["msg"]) from None
