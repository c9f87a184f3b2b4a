"""``python -m grpc_host [--config settings.json] [--port 8002] [--metrics-port 9102] ...``

Gateway settings: ``--config`` (or ``GATEWAY_CONFIG``) JSON file, then environment variables,
then Key Vault (see docs/configuration). Host settings: ``GrpcHost__*`` variables, then flags.
Exit codes: 0 after a clean (drained) shutdown, 2 on invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from core import ConfigurationError, configure_telemetry, load_settings

from ._config import load_host_settings
from ._server import serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grpc_host", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="gateway settings JSON file (default: $GATEWAY_CONFIG)")
    parser.add_argument("--host", help="gRPC listen address (GrpcHost__Host, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gRPC port, 0 = any free (GrpcHost__Port, default 8002)")
    parser.add_argument("--metrics-host", help="/metrics listen address (GrpcHost__MetricsHost)")
    parser.add_argument(
        "--metrics-port", type=int, help="/metrics port, 0 = any free (GrpcHost__MetricsPort, default 9102)"
    )
    parser.add_argument("--grace-seconds", type=float, help="drain time on SIGTERM (GrpcHost__GraceSeconds)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # azure-core (Table storage, Key Vault, Entra) logs every HTTP request at INFO, with all headers:
    # noise, and a cost on the hot path.
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        settings = load_settings(json_path=args.config or os.environ.get("GATEWAY_CONFIG") or None)
        host_settings = load_host_settings(
            os.environ,
            {
                "host": args.host,
                "port": args.port,
                "metrics_host": args.metrics_host,
                "metrics_port": args.metrics_port,
                "grace_seconds": args.grace_seconds,
            },
        )
        configure_telemetry(settings, service_name="openai-gateway-grpc", export_process=True)  # APPLICATIONINSIGHTS_*
        return asyncio.run(serve(settings, host_settings))
    except ConfigurationError as exc:
        print(f"grpc_host: invalid configuration: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
