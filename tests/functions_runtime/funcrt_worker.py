"""Stand-in for the Python proxy worker that the Functions host ships next to itself.

On Python 3.13+ the host starts a thin "proxy worker" of its own (it is part of the platform, not of
the app, and is not on PyPI) with ``--host --port --workerId --requestId --grpcMaxMessageLength``.
The proxy worker connects to the host's gRPC server, opens the ``EventStream``, says ``StartStream``
and hands every request to the app's pinned ``azure_functions_runtime`` library, whose
``worker_init_request`` / ``functions_metadata_request`` / ``function_load_request`` /
``invocation_request`` do the real work (indexing, binding checks, the HTTP server of the FastAPI
extension, invoking the functions). This file does the same, in the app's Python 3.13 venv, so that
the tests drive the real library the way Azure does; logs go back to the host as ``RpcLog``.

Run by tests/functions_runtime/funcrt_host.py, never by hand. Needs the generated
``FunctionRpc_pb2`` modules on PYTHONPATH (the host puts them there).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import FunctionRpc_pb2 as protos
import FunctionRpc_pb2_grpc as protos_grpc
import grpc

CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass
class WorkerRequest:
    """What the proxy worker hands the runtime library: the message and, for init, the protos."""

    name: str
    request: Any
    properties: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="stand-in Python proxy worker")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workerId", dest="worker_id", required=True)
    parser.add_argument("--requestId", dest="request_id", required=True)
    parser.add_argument("--grpcMaxMessageLength", dest="max_message_length", type=int, default=0)
    return parser.parse_args(argv)


class RpcLogHandler(logging.Handler):
    """Sends every log record to the host as an ``RpcLog`` (what the proxy worker does once connected)."""

    def __init__(self, outbound: asyncio.Queue[Any], request_id: str) -> None:
        super().__init__()
        self._outbound = outbound
        self._request_id = request_id

    def emit(self, record: logging.LogRecord) -> None:
        level = (protos.RpcLog.Critical if record.levelno >= logging.CRITICAL
                 else protos.RpcLog.Error if record.levelno >= logging.ERROR
                 else protos.RpcLog.Warning if record.levelno >= logging.WARNING
                 else protos.RpcLog.Information if record.levelno >= logging.INFO
                 else protos.RpcLog.Debug)
        system = record.name.startswith(("azure_functions_runtime", "azure_functions_worker"))
        log = protos.RpcLog(level=level, message=self.format(record), category=record.name,
                            log_category=protos.RpcLog.System if system else protos.RpcLog.User)
        message = protos.StreamingMessage(request_id=self._request_id, rpc_log=log)
        try:
            self._outbound.put_nowait(message)
        except RuntimeError:  # loop closed while shutting down
            pass


class ProxyWorker:
    def __init__(self, args: argparse.Namespace, runtime: Any) -> None:
        self._args = args
        self._runtime = runtime
        self._outbound: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        reply: dict[str, tuple[str, Callable[[WorkerRequest], Awaitable[Any]]]] = {
            "worker_init_request": ("worker_init_response", runtime.worker_init_request),
            "functions_metadata_request": ("function_metadata_response", runtime.functions_metadata_request),
            "function_load_request": ("function_load_response", runtime.function_load_request),
            "invocation_request": ("invocation_response", runtime.invocation_request),
            "function_environment_reload_request": (
                "function_environment_reload_response", runtime.function_environment_reload_request),
        }
        self._handlers = reply

    async def _outgoing(self) -> AsyncIterator[Any]:
        while True:
            message = await self._outbound.get()
            if message is None:
                return
            yield message

    async def run(self) -> None:
        args = self._args
        options = []
        if args.max_message_length:
            options += [("grpc.max_receive_message_length", args.max_message_length),
                        ("grpc.max_send_message_length", args.max_message_length)]
        async with grpc.aio.insecure_channel(f"{args.host}:{args.port}", options=options) as channel:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_SECONDS)
            stream = protos_grpc.FunctionRpcStub(channel).EventStream(self._outgoing())
            self._outbound.put_nowait(protos.StreamingMessage(
                request_id=args.request_id, start_stream=protos.StartStream(worker_id=args.worker_id)))
            handler = RpcLogHandler(self._outbound, args.request_id)
            logging.getLogger().addHandler(handler)
            logging.getLogger().setLevel(logging.INFO)
            self._runtime.start_threadpool_executor()
            try:
                async for message in stream:
                    kind = message.WhichOneof("content")
                    if kind == "worker_terminate":
                        break
                    task = asyncio.create_task(self._dispatch(kind, message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            finally:
                logging.getLogger().removeHandler(handler)
                self._runtime.stop_threadpool_executor()
                self._outbound.put_nowait(None)

    async def _dispatch(self, kind: str | None, message: Any) -> None:
        if kind == "worker_status_request":
            self._reply(message.request_id, worker_status_response=protos.WorkerStatusResponse())
            return
        if kind not in self._handlers:
            logging.getLogger("azure_functions_worker").error("unknown StreamingMessage content %s", kind)
            return
        response_field, handle = self._handlers[kind]
        properties = {"protos": protos, "host": self._args.host}
        response = await handle(WorkerRequest(kind, message, properties))
        self._reply(self._args.request_id, **{response_field: response})

    def _reply(self, request_id: str, **content: Any) -> None:
        self._outbound.put_nowait(protos.StreamingMessage(request_id=request_id, **content))


def main() -> None:
    args = parse_args()
    # The proxy worker puts the app folder first on sys.path (AzureWebJobsScriptRoot, else the cwd).
    sys.path.insert(0, os.environ.get("AzureWebJobsScriptRoot") or os.getcwd())
    import azure_functions_runtime

    asyncio.run(ProxyWorker(args, azure_functions_runtime).run())


if __name__ == "__main__":
    main()
