"""Console client and traffic generator for the gateway: ``python -m clients.cli --help``."""

from clients.cli._app import app, main
from clients.cli._model import GatewayClient, Message, Reply, RequestFailed, Usage

__all__ = ["GatewayClient", "Message", "Reply", "RequestFailed", "Usage", "app", "main"]
