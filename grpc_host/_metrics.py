"""``GET /metrics``: the gateway's registry in Prometheus text format, on its own HTTP port.

Always the classic text format 0.0.4, whatever the scraper's ``Accept`` says: in OpenMetrics a
counter's family drops its ``_total`` suffix, so ``openai_prompt_tokens_total`` (counter) and
``openai_prompt_tokens`` (histogram) would become two families with one name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from core import GatewayError

Authorize = Callable[[str | None], None]  # Gateway.authorize_metrics: raises when Auth:MetricsKey is not met


@dataclass(frozen=True, slots=True)
class MetricsServer:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_metrics_server(
    exposition: Callable[[], bytes | None], host: str, port: int, authorize: Authorize | None = None
) -> MetricsServer:
    """Serve ``/metrics`` (and a trivial ``/healthz``) on ``host:port``; port 0 picks a free one.

    ``exposition`` is ``Gateway.metrics_exposition``: None means ``Prometheus:Enabled`` is false (404).
    ``authorize`` is ``Gateway.authorize_metrics``: with ``Auth:MetricsKey`` set, ``/metrics`` needs
    ``Authorization: Bearer <metrics key>`` (401 problem+json otherwise), as it lists every tenant's usage.
    """

    async def metrics(request: web.Request) -> web.Response:
        body = exposition()
        if body is None:
            return web.Response(status=404, text="metrics are disabled (Prometheus:Enabled is false)")
        if authorize is not None:
            try:
                authorize(request.headers.get("Authorization"))
            except GatewayError as exc:
                problem = {"type": "about:blank", "title": exc.title, "status": 401, "detail": exc.detail}
                return web.Response(status=401, body=json.dumps(problem), content_type="application/problem+json",
                                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return MetricsServer(runner, int(bound))
