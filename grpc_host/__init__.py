"""gRPC host of the gateway: the C# sample's ``OpenAiRestApi.OpenAIServiceGrpc`` on grpc.aio.

Run it with ``python -m grpc_host``; embed it (tests, benchmarks) with :func:`start_host`.
"""

from ._config import GrpcHostSettings, load_host_settings
from ._server import RunningHost, serve, start_host

__all__ = ["GrpcHostSettings", "RunningHost", "load_host_settings", "serve", "start_host"]
