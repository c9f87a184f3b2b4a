"""Push the metrics registry to a Prometheus remote-write receiver, off the request path.

Serverless instances cannot be scraped, so each process pushes its own registry every
``RemoteWrite:IntervalSeconds`` to Azure Monitor managed Prometheus (Entra bearer token for
``https://monitor.azure.com/.default``) or to any receiver that speaks remote-write 1.0 (plain
URL, no auth). Counters are cumulative, so a failed push loses nothing: the next one that gets
through carries the current values. Failures never reach a request; they are logged and counted:

    gateway_remote_write_pushes_total                   pushes the receiver accepted
    gateway_remote_write_failures_total{reason}         pushes that failed after every retry
    gateway_remote_write_last_success_timestamp_seconds when the last push was accepted

``reason`` is ``timeout``, ``connection``, ``auth`` (no token, or 401/403), ``server`` (5xx or
429: retried) or ``rejected`` (other 4xx: not retried, the receiver refused the data).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from azure.core.exceptions import AzureError
from prometheus_client import CollectorRegistry, Counter, Gauge
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .._errors import ConfigurationError
from ..config import RemoteWriteSettings
from ._remote_series import REMOTE_WRITE_HEADERS, SeriesEncoder, default_instance

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from azure.core.credentials_async import AsyncTokenCredential

log = logging.getLogger("core.remote_write")

MONITOR_SCOPE = "https://monitor.azure.com/.default"
FAILURE_REASONS = ("timeout", "connection", "auth", "server", "rejected")
_TOKEN_REFRESH_MARGIN_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per push and the exponential backoff (with jitter) between them."""

    attempts: int = 3
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 8.0


class _PushError(Exception):
    def __init__(self, reason: str, detail: str, *, retryable: bool) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


class _BearerToken:
    """An Entra access token for one scope, reused until five minutes before it expires."""

    def __init__(
        self, credential: AsyncTokenCredential, scope: str, wait_seconds: float, clock: Callable[[], float]
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._wait = wait_seconds
        self._clock = clock
        self._token = ""
        self._expires_on = 0.0

    async def header(self) -> str:
        if not self._token or self._clock() >= self._expires_on - _TOKEN_REFRESH_MARGIN_SECONDS:
            try:
                async with asyncio.timeout(self._wait):
                    access = await self._credential.get_token(self._scope)
            except AzureError as exc:  # CredentialUnavailableError, ClientAuthenticationError, ...
                raise _PushError("auth", f"no Entra token for {self._scope}: {type(exc).__name__}",
                                 retryable=True) from None
            except TimeoutError:
                raise _PushError("auth", f"no Entra token for {self._scope} within {self._wait:g}s",
                                 retryable=True) from None
            self._token, self._expires_on = access.token, float(access.expires_on)
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = ""


class RemoteWritePusher:
    """Periodically pushes ``registry`` to ``settings.url``; ``start``, ``push_now``, ``aclose``."""

    def __init__(
        self,
        settings: RemoteWriteSettings,
        registry: CollectorRegistry,
        *,
        credential: AsyncTokenCredential | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _validate(settings)
        self._settings = settings
        self._registry = registry
        self._instance = settings.instance.strip() or default_instance(environ)
        self._encoder = SeriesEncoder(job=settings.job, instance=self._instance)
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._owns_credential = credential is None and settings.auth == "entra"
        if settings.auth == "entra" and credential is None:
            credential = _default_credential(settings.managed_identity_client_id)
        self._credential = credential
        self._token = None if credential is None else _BearerToken(
            credential, MONITOR_SCOPE, settings.timeout_seconds, clock
        )
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failed_in_a_row = 0
        self._pushes = Counter("gateway_remote_write_pushes", "Remote-write pushes the receiver accepted.",
                               registry=registry)
        self._failures = Counter(
            "gateway_remote_write_failures",
            "Remote-write pushes that failed after every retry, by reason.",
            ("reason",), registry=registry,
        )
        for reason in FAILURE_REASONS:
            self._failures.labels(reason)  # every reason is a series from the start (value 0)
        self._last_success = Gauge(
            "gateway_remote_write_last_success_timestamp_seconds",
            "Unix time of the last remote-write push the receiver accepted (0: none yet).",
            registry=registry,
        )

    @property
    def instance(self) -> str:
        """The ``instance`` label this process puts on every series it pushes."""
        return self._instance

    async def start(self) -> None:
        """Start pushing every ``IntervalSeconds`` on the running loop; calling again does nothing."""
        if self._task is not None or self._closed:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="remote-write")
        self._task.add_done_callback(_report_crash)
        log.info("remote write to %s every %gs as job=%s instance=%s", _safe_url(self._settings.url),
                 self._settings.interval_seconds, self._settings.job, self._instance)

    async def push_now(self) -> bool:
        """Push the registry as it is now; True when the receiver accepted every series."""
        if self._closed:
            return False
        async with self._lock:
            return await self._push()

    async def aclose(self) -> None:
        """Stop the interval, push the final values once, release what this pusher opened."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async with self._lock:
            await self._push(attempts=1)  # one try, bounded by TimeoutSeconds: shutdown stays quick
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_credential and self._credential is not None:
            await self._credential.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.interval_seconds)
            await self.push_now()

    async def _push(self, attempts: int | None = None) -> bool:
        # Encoding thousands of series takes milliseconds of CPU: keep it off the event loop.
        snap = await asyncio.to_thread(self._encoder.snapshot, self._registry, int(self._clock() * 1000))
        try:
            for body in snap.bodies:
                await self._send_with_retries(body, attempts or self._retry.attempts)
        except _PushError as exc:
            self._failures.labels(exc.reason).inc()
            self._failed_in_a_row += 1
            log.warning("remote write to %s failed (%s, %d in a row): %s", _safe_url(self._settings.url),
                        exc.reason, self._failed_in_a_row, exc.detail)
            return False
        if self._failed_in_a_row:
            log.info("remote write delivered again after %d failed pushes", self._failed_in_a_row)
        self._failed_in_a_row = 0
        self._pushes.inc()
        self._last_success.set(self._clock())
        return True

    async def _send_with_retries(self, body: bytes, attempts: int) -> None:
        policy = self._retry
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _PushError) and exc.retryable),
            stop=stop_after_attempt(max(1, attempts)),
            wait=wait_exponential_jitter(multiplier=policy.initial_backoff_seconds,
                                         max=policy.max_backoff_seconds,
                                         jitter=policy.initial_backoff_seconds),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._send(body)

    async def _send(self, body: bytes) -> None:
        timeout = self._settings.timeout_seconds
        headers = dict(REMOTE_WRITE_HEADERS)
        if self._token is not None:
            headers["Authorization"] = await self._token.header()
        try:
            async with self._http().post(
                self._settings.url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:300].strip()
        except TimeoutError:
            raise _PushError("timeout", f"no answer within {timeout:g}s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise _PushError("connection", f"{type(exc).__name__}: {exc}", retryable=True) from None
        raise self._status_error(response.status, text)

    def _status_error(self, status: int, text: str) -> _PushError:
        detail = f"HTTP {status}: {text or 'no body'}"
        if status in (401, 403):
            if self._token is not None:
                self._token.invalidate()
            return _PushError("auth", detail, retryable=self._token is not None)
        if status == 429 or status >= 500:
            return _PushError("server", detail, retryable=True)
        return _PushError("rejected", detail, retryable=False)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _validate(settings: RemoteWriteSettings) -> None:
    parts = urlsplit(settings.url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            "RemoteWrite:Url",
            "must be the receiver's http(s) write URL, e.g. http://127.0.0.1:9090/api/v1/write or the "
            "Azure Monitor workspace's metrics ingestion endpoint "
            "(.../dataCollectionRules/<immutableId>/streams/Microsoft-PrometheusMetrics/api/v1/write"
            "?api-version=2023-04-24); or set RemoteWrite:Enabled to false",
        )
    if not settings.job.strip():
        raise ConfigurationError("RemoteWrite:Job", "must not be empty (it becomes the job label)")


def _default_credential(client_id: str) -> AsyncTokenCredential:
    """Managed identity (user-assigned when a client id is set), else the developer's login."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id.strip() or None)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("remote write stopped: %r", task.exception())


__all__ = ["FAILURE_REASONS", "MONITOR_SCOPE", "RemoteWritePusher", "RetryPolicy"]
