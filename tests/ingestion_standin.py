"""A local stand-in for the Application Insights ingestion endpoint (``/v2.1/track``).

The real ``azure-monitor-opentelemetry`` exporter posts to it when the connection string says
``IngestionEndpoint=http://127.0.0.1:<port>/``. It decodes the (gzipped) JSON envelopes, keeps
them, and answers like the service (``itemsReceived`` / ``itemsAccepted``), so nothing leaves
the machine. Helpers pick out requests, dependencies and log messages by trace id.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

IKEY = "00000000-0000-4000-8000-000000000000"
ROOT = Path(__file__).resolve().parents[1]


def traceparent() -> tuple[str, str]:
    """A caller's sampled W3C traceparent and its trace id."""
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


def props(item: dict[str, Any]) -> dict[str, Any]:
    """An envelope's customDimensions."""
    return dict(item.get("properties") or {})


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python <args>`` from the repository root, stderr to ``log`` (stop it by PID)."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stderr=out)


@dataclass
class Ingestion:
    url: str
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)  # every decoded body, for secret scans
    unexpected: list[str] = field(default_factory=list)  # requests to any other path

    @property
    def connection_string(self) -> str:
        return f"InstrumentationKey={IKEY};IngestionEndpoint={self.url}"

    def environment(self, **extra: str) -> dict[str, str]:
        """Process environment for a host exporting here: 100 % sampled, quick batches, no
        statsbeat, control-plane polling or live metrics (nothing goes off the machine)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))}
        env.update({
            "APPLICATIONINSIGHTS_CONNECTION_STRING": self.connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",  # no OneSettings polling
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            **extra,
        })
        return env

    def of_type(self, base_type: str, trace_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.envelopes if e.get("data", {}).get("baseType") == base_type
                and (trace_id is None or e.get("tags", {}).get("ai.operation.id") == trace_id)]

    def requests(self, trace_id: str) -> list[dict[str, Any]]:
        return [e["data"]["baseData"] | {"tags": e["tags"]} for e in self.of_type("RequestData", trace_id)]

    def dependencies(self, trace_id: str) -> list[dict[str, Any]]:
        return [e["data"]["baseData"] | {"tags": e["tags"]}
                for e in self.of_type("RemoteDependencyData", trace_id)]

    def messages(self, trace_id: str) -> list[dict[str, Any]]:
        return [e["data"]["baseData"] | {"tags": e["tags"]} for e in self.of_type("MessageData", trace_id)]

    async def wait_for(self, what: Callable[[], bool], seconds: float = 20.0) -> None:
        """Until ``what()`` holds (the exporter batches every 200 ms here); fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not what():
            if time.monotonic() > deadline:
                kinds = sorted({e.get("data", {}).get("baseType", "?") for e in self.envelopes})
                raise AssertionError(f"telemetry not received in {seconds}s; got {len(self.envelopes)} "
                                     f"envelopes of types {kinds}; other requests: {self.unexpected[:5]}")
            await asyncio.sleep(0.1)


async def stop_process(proc: subprocess.Popen[bytes], seconds: float = 30.0) -> int:
    """SIGTERM, then wait without blocking the loop: the host flushes its last telemetry to the
    stand-in, which runs in this loop. Killed (and the test failed) if it does not exit in time."""
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{proc.args} did not exit within {seconds}s of SIGTERM")
        await asyncio.sleep(0.05)
    return proc.returncode


@asynccontextmanager
async def ingestion_standin() -> AsyncIterator[Ingestion]:
    store = Ingestion(url="")

    async def track(request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
        store.bodies.append(text)
        items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line)
                                                                         for line in text.splitlines() if line]
        store.envelopes.extend(items)
        return web.json_response({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    async def other(request: web.Request) -> web.Response:
        # The exporter appends "/v2.1/track" to the endpoint, so the usual trailing "/" gives "//".
        if request.method == "POST" and request.path.lstrip("/") == "v2.1/track":
            return await track(request)
        store.unexpected.append(f"{request.method} {request.path}")
        return web.Response(status=404)

    app.router.add_route("*", "/{tail:.*}", other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    store.url = f"http://{host}:{port}/"
    try:
        yield store
    finally:
        await runner.cleanup()
