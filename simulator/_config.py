"""Configuration of a simulated Azure OpenAI instance (frozen dataclasses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RETRY_STYLES = ("both", "ms", "seconds", "date", "reset")


class ConfigError(ValueError):
    """Invalid simulator configuration; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """One model deployment of the simulated instance.

    ``tpm`` / ``rpm``: tokens and requests per minute over a sliding 60 s window; 0 = unlimited.
    """

    name: str
    model: str = ""
    tpm: int = 0
    rpm: int = 0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"deployment name must be a non-empty path segment, got {self.name!r}")
        if not self.model:
            object.__setattr__(self, "model", self.name)
        for key in ("tpm", "rpm"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"deployment {self.name!r}: {key} must be an integer >= 0")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault applied to the next ``count`` chat requests (``None`` = until cleared).

    - ``status``: answer with this HTTP status and an Azure-style error body
      (429 also carries ``retry-after-ms``/``retry-after`` from ``retry_after_ms``).
    - ``delay_ms``: wait this long before handling the request (combinable with the others).
    - ``drop``: close the connection without a response; for streamed requests with
      ``drop_after_chunks`` = k, close it after k SSE events.
    - ``retry_style``: the headers of an injected 429: ``both`` (``retry-after-ms`` and
      ``retry-after`` seconds, as Azure OpenAI), ``ms``, ``seconds``, ``date`` (``Retry-After`` as an
      HTTP date) or ``reset`` (only ``x-ratelimit-reset-requests``/``-tokens``).
    - ``stall_ms``: stop sending for this long; streamed requests first send ``stall_after_chunks``
      SSE events (default 0: right after the headers), JSON requests stall before the answer.
    - ``deployment``: only requests to this deployment take the fault (``None`` = any).
    """

    status: int | None = None
    delay_ms: float = 0.0
    drop: bool = False
    drop_after_chunks: int | None = None
    count: int | None = None
    retry_after_ms: int = 1000
    deployment: str | None = None
    retry_style: str = "both"
    stall_ms: float = 0.0
    stall_after_chunks: int = 0

    def __post_init__(self) -> None:
        if self.retry_style not in RETRY_STYLES:
            raise ConfigError(f"fault retry_style must be one of {', '.join(RETRY_STYLES)}")
        if self.stall_ms < 0 or self.stall_after_chunks < 0:
            raise ConfigError("fault stall_ms and stall_after_chunks must be >= 0")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ConfigError("fault status must be an HTTP error status (400-599)")
        if self.delay_ms < 0:
            raise ConfigError("fault delay_ms must be >= 0")
        if self.count is not None and self.count < 1:
            raise ConfigError("fault count must be >= 1 (omit it for 'until cleared')")
        if self.drop_after_chunks is not None and self.drop_after_chunks < 0:
            raise ConfigError("fault drop_after_chunks must be >= 0")
        if self.retry_after_ms < 0:
            raise ConfigError("fault retry_after_ms must be >= 0")
        if self.deployment is not None and not isinstance(self.deployment, str):
            raise ConfigError("fault deployment must be a deployment name")
        if self.status is None and not self.drop and self.delay_ms == 0 and self.stall_ms == 0:
            raise ConfigError("a fault needs at least one of status, delay_ms, drop, stall_ms")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultSpec:
        """Build a fault from its JSON form (the control API and config files use it)."""
        known = {"status", "delay_ms", "drop", "drop_after_chunks", "count", "retry_after_ms", "deployment",
                 "retry_style", "stall_ms", "stall_after_chunks"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(
                status=_opt_int(data.get("status"), "status"),
                delay_ms=float(data.get("delay_ms", 0.0)),
                drop=_bool(data.get("drop", False), "drop"),
                drop_after_chunks=_opt_int(data.get("drop_after_chunks"), "drop_after_chunks"),
                count=_opt_int(data.get("count"), "count"),
                retry_after_ms=int(data.get("retry_after_ms", 1000)),
                deployment=data.get("deployment"),
                retry_style=str(data.get("retry_style", "both")),
                stall_ms=float(data.get("stall_ms", 0.0)),
                stall_after_chunks=int(data.get("stall_after_chunks", 0)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid fault: {exc}") from None


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """A simulated Azure OpenAI instance.

    ``zero_latency`` forces all latency to 0 and skips optional work (benchmark mode).
    ``content_filter`` adds Azure's ``prompt_filter_results`` / ``content_filter_results``.
    ``min_completion_tokens``..``max_completion_tokens``: the default completion length range
    (the actual length comes from a hash of seed + messages; ``max_tokens`` of a request caps it).
    """

    name: str = "SimulatedOpenAI"
    api_key: str = "sim-key"
    deployments: tuple[DeploymentConfig, ...] = (DeploymentConfig(name="gpt-35-turbo-16k"),)
    seed: int = 0
    latency_ms: float = 0.0
    per_token_latency_ms: float = 0.0
    accept_bearer: bool = True
    zero_latency: bool = False
    content_filter: bool = True
    min_completion_tokens: int = 10
    max_completion_tokens: int = 60
    faults: tuple[FaultSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.deployments:
            raise ConfigError(f"instance {self.name!r}: at least one deployment is required")
        names = [d.name for d in self.deployments]
        if len(set(names)) != len(names):
            raise ConfigError(f"instance {self.name!r}: duplicate deployment names")
        if self.latency_ms < 0 or self.per_token_latency_ms < 0:
            raise ConfigError(f"instance {self.name!r}: latency_ms/per_token_latency_ms must be >= 0")
        if not 1 <= self.min_completion_tokens <= self.max_completion_tokens:
            raise ConfigError(
                f"instance {self.name!r}: need 1 <= min_completion_tokens <= max_completion_tokens"
            )
        if not self.api_key:
            raise ConfigError(f"instance {self.name!r}: api_key must not be empty")

    def deployment(self, name: str) -> DeploymentConfig | None:
        """The deployment called ``name``, or None."""
        for item in self.deployments:
            if item.name == name:
                return item
        return None

    @property
    def effective_latency_ms(self) -> float:
        return 0.0 if self.zero_latency else self.latency_ms

    @property
    def effective_per_token_latency_ms(self) -> float:
        return 0.0 if self.zero_latency else self.per_token_latency_ms

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatorConfig:
        """Build an instance config from its JSON form (see docs/simulator.md)."""
        values = dict(data)
        deployments = values.pop("deployments", None)
        faults = values.pop("faults", ())
        try:
            if deployments is not None:
                values["deployments"] = tuple(
                    DeploymentConfig(name=item) if isinstance(item, str) else DeploymentConfig(**item)
                    for item in deployments
                )
            values["faults"] = tuple(FaultSpec.from_dict(item) for item in faults)
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"instance {data.get('name', '?')!r}: {exc}") from None


def _opt_int(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"fault {key} must be an integer")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"fault {key} must be true or false")
    return value
