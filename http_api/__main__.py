"""``python -m http_api``: serve the REST handlers locally with uvicorn (127.0.0.1:8000)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from core import ConfigurationError, configure_telemetry, load_settings

from ._handlers import quiet_stream_aborts
from .app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m http_api", description=__doc__)
    parser.add_argument("--config", help="JSON settings file (the C# sample's appsettings layout)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDKs log every HTTP request at INFO (openai's transport; azure-core with all headers):
    # noise, and a cost on the hot path.
    for noisy in ("httpx2", "azure"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(quiet_stream_aborts)
    try:
        settings = load_settings(json_path=args.config)
    except ConfigurationError as exc:
        print(f"configuration error: {exc.detail}", file=sys.stderr)
        return 2
    configure_telemetry(settings, service_name="openai-gateway-rest")  # on with APPLICATIONINSIGHTS_*
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, loop="auto", http="auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
