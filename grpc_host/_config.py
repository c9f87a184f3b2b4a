"""``GrpcHost:*`` settings: where the host listens and how long it drains on shutdown.

Read from the environment with the gateway's naming style (``GrpcHost__Port=8002``); command
line flags override them. The defaults suit a developer machine (loopback only); the container
image sets ``GrpcHost__Host=0.0.0.0`` and ``GrpcHost__MetricsHost=0.0.0.0``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import ConfigurationError

SECTION = "GrpcHost"


class GrpcHostSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8002, ge=0, le=65535)
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    metrics_port: int = Field(default=9102, ge=0, le=65535)  # 0 picks a free port
    grace_seconds: float = Field(default=20.0, ge=0, le=3600)


_KEYS = {name.replace("_", ""): name for name in GrpcHostSettings.model_fields}


def _display(field: str) -> str:
    return "".join(part.capitalize() for part in field.split("_"))


def load_host_settings(
    environ: Mapping[str, str], overrides: Mapping[str, object | None] | None = None
) -> GrpcHostSettings:
    """Merge ``GrpcHost__*`` variables (case-insensitive) with non-None ``overrides``.

    Raises :class:`core.ConfigurationError` naming the key, e.g. ``GrpcHost:Port``.
    """
    values: dict[str, object] = {}
    prefix = SECTION.lower() + "__"
    for key, value in environ.items():
        lowered = key.lower()
        if lowered.startswith(prefix) and lowered[len(prefix) :] in _KEYS:
            values[_KEYS[lowered[len(prefix) :]]] = value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return GrpcHostSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        unknown = field not in GrpcHostSettings.model_fields
        key = f"{SECTION}:{field if unknown else _display(field)}"
        raise ConfigurationError(key, first["msg"]) from None
