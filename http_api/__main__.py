"""``python -m http_api``: serve the REST handlers locally with uvicorn (127.0.0.1:8000).

Gateway settings: ``--config`` (or ``GATEWAY_CONFIG``) JSON file, then environment variables,
then Key Vault. Server settings: ``RestHost__*`` variables (limits: see http_api/_limits.py and
docs/rest-server.md), then flags. Exit codes: 0 after a clean shutdown, 2 on invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import uvicorn

from core import ConfigurationError, configure_telemetry, load_settings

from ._limits import load_rest_host_settings
from ._server import serve


async def _no_app(scope: object, receive: object, send: object) -> None:
    """Stands in for the app in the uvicorn config asked only for its event loop factory."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m http_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="JSON settings file (the C# sample's appsettings layout)")
    parser.add_argument("--host", help="address to bind (RestHost__Host, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 = any free (RestHost__Port, default 8000)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # azure-core (Table storage, Key Vault, Entra) logs every HTTP request at INFO, with all headers:
    # noise, and a cost on the hot path.
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        settings = load_settings(json_path=args.config or os.environ.get("GATEWAY_CONFIG") or None)
        limits = load_rest_host_settings(os.environ, {"host": args.host, "port": args.port})
        configure_telemetry(settings, service_name="openai-gateway-rest", export_process=True)  # APPLICATIONINSIGHTS_*
        loop_factory = uvicorn.Config(app=_no_app, loop="auto").get_loop_factory()  # uvloop when installed
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(settings, limits, log_level=args.log_level))
    except ConfigurationError as exc:
        print(f"http_api: invalid configuration: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
