"""The REST host: handlers shared by Azure Functions and the local uvicorn server."""

from ._compat import CompatHandlers
from ._handlers import RestHandlers
from ._problems import problem, problem_for, status_for
from ._runtime import LazyGateway, gateway_from_environment, settings_from_environment, telemetry_from_environment
from .app import create_app

__all__ = [
    "CompatHandlers",
    "LazyGateway",
    "RestHandlers",
    "create_app",
    "gateway_from_environment",
    "problem",
    "problem_for",
    "settings_from_environment",
    "status_for",
    "telemetry_from_environment",
]
