"""A stand-in for the Azure Functions host, enough to run ``function_app.py`` in the real runtime.

Azure Functions Core Tools (the .NET host) cannot be installed here. This module plays its part of
the host <-> worker contract, as the host does it:

1. serves ``FunctionRpc.EventStream`` (gRPC) on 127.0.0.1 and starts the worker process with
   ``--host --port --workerId --requestId --grpcMaxMessageLength``, the app settings as environment
   variables and the app folder as working directory (``AzureWebJobsScriptRoot``);
2. waits for ``StartStream`` carrying that worker id, sends ``WorkerInitRequest`` (the runtime
   indexes the app here: init indexing), then ``FunctionsMetadataRequest`` (worker indexing: the
   functions, their raw bindings, routes, methods and auth levels come from the worker, not from a
   function.json), then one ``FunctionLoadRequest`` per function;
3. serves HTTP on 127.0.0.1 like the host's front door: ``routePrefix`` from host.json, route and
   method matching, the key check that the indexed ``authLevel`` asks for (``code`` query parameter
   or ``x-functions-key`` header), then for each call an ``InvocationRequest`` with the trigger's
   ``RpcHttp`` (method, url, headers, query, route params; no body) while the request itself is
   proxied to the worker's own HTTP server (capability ``HttpUri``) with the ``x-ms-invocation-id``
   correlation header; the response streams back as the worker writes it.

Not emulated: scale-out and the scale controller, the host's HTTP limits (request size, timeouts,
``maxConcurrentRequests``), key storage and rotation, extension bundles, placeholder mode
(``FunctionEnvironmentReloadRequest``), retries, worker restarts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import grpc
import httpx
import uvicorn
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from localrun.ports import free_port

HOST_VERSION = "4.1040.0-standin"
# What the host itself advertises in WorkerInitRequest (FunctionDataCache only when that cache is on).
HOST_CAPABILITIES = {"MultiStream": "10"}
MAX_MESSAGE_LENGTH = 2147483647
STEP_TIMEOUT = 60.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host"}


class HostError(RuntimeError):
    """The worker failed a step of the start-up (the message is what the host would log)."""


@dataclass(frozen=True)
class IndexedFunction:
    function_id: str
    name: str
    route: str
    methods: tuple[str, ...]
    auth_level: str
    trigger_param: str
    bindings: tuple[dict[str, Any], ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters when ``path`` (no leading slash) matches this function's route template."""
        pattern = re.sub(r"\\\{(\w+)(?::\w+)?\\\}", r"(?P<\1>[^/]+)", re.escape(self.route))
        found = re.fullmatch(pattern, path, flags=re.IGNORECASE)
        return found.groupdict() if found else None


@dataclass
class WorkerLog:
    level: int
    category: str
    message: str
    invocation_id: str


@dataclass
class _Channel:
    """The host's side of one worker's EventStream."""

    protos: Any
    worker_id: str
    outbound: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: dict[tuple[str, str], asyncio.Future[Any]] = field(default_factory=dict)
    logs: list[WorkerLog] = field(default_factory=list)

    def expect(self, kind: str, key: str = "") -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[(kind, key)] = future
        return future

    def deliver(self, message: Any) -> None:
        kind = message.WhichOneof("content")
        if kind == "rpc_log":
            log = message.rpc_log
            self.logs.append(WorkerLog(log.level, log.category, log.message, log.invocation_id))
            return
        body = getattr(message, kind)
        key = {"function_load_response": "function_id", "invocation_response": "invocation_id"}.get(kind)
        future = self.waiting.pop((kind, getattr(body, key) if key else ""), None)
        if future is not None and not future.done():
            future.set_result(body)

    def fail_all(self, reason: str) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(HostError(reason))
        self.waiting.clear()


class _FunctionRpc:
    """The gRPC servicer: the worker connects, says StartStream, then messages flow both ways."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    async def EventStream(self, request_iterator: Any, context: Any) -> Any:  # the gRPC method name
        channel = self._channel
        first = await anext(request_iterator)
        if first.WhichOneof("content") != "start_stream" or first.start_stream.worker_id != channel.worker_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected StartStream with the worker id")
        channel.connected.set()

        async def read() -> None:
            try:
                async for message in request_iterator:
                    channel.deliver(message)
            finally:
                channel.fail_all("the worker closed its EventStream")
                channel.closed.set()
                channel.outbound.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (message := await channel.outbound.get()) is not None:
                yield message
        finally:
            reader.cancel()


class StandInHost:
    """Starts the worker on ``app_dir`` with ``python`` and serves the app's HTTP functions."""

    def __init__(self, *, python: Path, worker_script: Path, protos_dir: Path, protos: Any,
                 app_dir: Path, app_settings: dict[str, str], log_path: Path,
                 extra_pythonpath: tuple[Path, ...] = ()) -> None:
        self.python, self.worker_script, self.app_dir = python, worker_script, app_dir
        self.protos, self.protos_dir = protos, protos_dir
        self.app_settings, self.log_path, self.extra_pythonpath = app_settings, log_path, extra_pythonpath
        self.function_key = secrets.token_urlsafe(24)
        self.master_key = secrets.token_urlsafe(24)
        self.worker_capabilities: dict[str, str] = {}
        self.worker_metadata: Any = None
        self.functions: dict[str, IndexedFunction] = {}
        self.url = ""
        self._channel = _Channel(protos, worker_id=str(uuid.uuid4()))
        self._grpc: Any = None
        self._process: asyncio.subprocess.Process | None = None
        self._front: uvicorn.Server | None = None
        self._front_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._route_prefix = ""
        self.invocations: list[tuple[str, str, int]] = []  # (function, invocation id, StatusResult)
        self._pending: list[asyncio.Future[None]] = []

    @property
    def logs(self) -> list[WorkerLog]:
        return self._channel.logs

    # ---- start-up: gRPC server, worker process, init, metadata, load ----
    async def start(self) -> None:
        protos = self.protos
        import FunctionRpc_pb2_grpc  # generated next to FunctionRpc_pb2 (see conftest)

        self._grpc = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
                                              ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH)])
        FunctionRpc_pb2_grpc.add_FunctionRpcServicer_to_server(_FunctionRpc(self._channel), self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        await self._grpc.start()
        await self._spawn_worker(port)
        await self._step(self._channel.connected.wait(), "StartStream")

        init = await self._ask("worker_init_response", worker_init_request=protos.WorkerInitRequest(
            host_version=HOST_VERSION, function_app_directory=str(self.app_dir),
            worker_directory=str(self.worker_script.parent), capabilities=HOST_CAPABILITIES))
        self.worker_capabilities = dict(init.capabilities)
        self.worker_metadata = init.worker_metadata
        _check(init.result, "WorkerInitRequest")

        metadata = await self._ask("function_metadata_response",
                                   functions_metadata_request=protos.FunctionsMetadataRequest(
                                       function_app_directory=str(self.app_dir)))
        _check(metadata.result, "FunctionsMetadataRequest")
        if metadata.use_default_metadata_indexing:
            raise HostError("the worker asked for host indexing (function.json), not a v2 app")
        for fn in metadata.function_metadata_results:
            if fn.HasField("status"):
                _check(fn.status, f"indexing {fn.name}")
            self.functions[fn.name] = _indexed(fn)
        for fn in metadata.function_metadata_results:
            loaded = await self._ask("function_load_response", key=fn.function_id,
                                     function_load_request=protos.FunctionLoadRequest(
                                         function_id=fn.function_id, metadata=fn))
            _check(loaded.result, f"FunctionLoadRequest {fn.name}")
        if self.worker_capabilities.get("WorkerStatus") == "true":  # the host's periodic health probe
            await self._ask("worker_status_response", worker_status_request=protos.WorkerStatusRequest())
        await self._serve_http()

    async def _spawn_worker(self, grpc_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        pythonpath = [str(self.protos_dir), *map(str, self.extra_pythonpath)]
        env.update({
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "FUNCTIONS_WORKER_RUNTIME_VERSION": "3.13",
            "AzureWebJobsScriptRoot": str(self.app_dir),
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.app_settings)
        log = self.log_path.open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(self.python), str(self.worker_script), "--host", "127.0.0.1", "--port", str(grpc_port),
                "--workerId", self._channel.worker_id, "--requestId", str(uuid.uuid4()),
                "--grpcMaxMessageLength", str(MAX_MESSAGE_LENGTH),
                cwd=self.app_dir, env=env, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()

    async def _ask(self, reply: str, key: str = "", **content: Any) -> Any:
        future = self._channel.expect(reply, key)
        self._channel.outbound.put_nowait(self.protos.StreamingMessage(request_id=str(uuid.uuid4()), **content))
        return await self._step(future, reply)

    async def _step(self, awaitable: Any, what: str) -> Any:
        assert self._process is not None
        waiter = asyncio.ensure_future(awaitable)
        exited = asyncio.ensure_future(self._process.wait())
        done, _ = await asyncio.wait({waiter, exited}, timeout=STEP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            exited.cancel()
            return waiter.result()
        waiter.cancel()
        exited.cancel()
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        state = f"exited with {self._process.returncode}" if exited in done else f"no {what} in {STEP_TIMEOUT:.0f} s"
        raise HostError(f"worker {state} while waiting for {what}; worker output:\n{tail}")

    # ---- the HTTP front door ----
    async def _serve_http(self) -> None:
        host_json = json.loads((self.app_dir / "host.json").read_text())
        self._route_prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api").strip("/")
        self._client = httpx.AsyncClient(base_url=self.worker_capabilities["HttpUri"], timeout=60)
        port = free_port()
        self._front = uvicorn.Server(uvicorn.Config(self._front_door, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="off", interface="asgi3"))
        self._front_task = asyncio.create_task(self._front.serve())
        while not self._front.started:
            if self._front_task.done():
                self._front_task.result()
            await asyncio.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    async def _front_door(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self._route(request)
        await response(scope, receive, send)

    async def _route(self, request: Request) -> Response:
        path = request.url.path.lstrip("/")
        if self._route_prefix:
            if not path.startswith(self._route_prefix + "/"):
                return Response(status_code=404)
            path = path[len(self._route_prefix) + 1:]
        for fn in self.functions.values():
            params = fn.match(path)
            if params is not None and request.method in fn.methods:
                if not self._authorized(fn, request):
                    return Response(status_code=401)
                return await self._invoke(fn, request, params)
        return Response(status_code=404)

    def _authorized(self, fn: IndexedFunction, request: Request) -> bool:
        """The host's key check: anonymous needs nothing, function a function or the master key,
        admin the master key; the key comes as ``?code=`` or ``x-functions-key``."""
        if fn.auth_level == "ANONYMOUS":
            return True
        given = request.query_params.get("code") or request.headers.get("x-functions-key") or ""
        allowed = [self.master_key] if fn.auth_level == "ADMIN" else [self.function_key, self.master_key]
        return any(secrets.compare_digest(given, key) for key in allowed)

    async def _invoke(self, fn: IndexedFunction, request: Request, params: dict[str, str]) -> Response:
        protos = self.protos
        assert self._client is not None
        invocation_id = str(uuid.uuid4())
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        http = protos.RpcHttp(method=request.method, url=str(request.url), params=params, query=query,
                              headers={k.lower(): v for k, v in request.headers.items()})
        answered = self._channel.expect("invocation_response", invocation_id)
        self._channel.outbound.put_nowait(protos.StreamingMessage(
            request_id=str(uuid.uuid4()), invocation_request=protos.InvocationRequest(
                invocation_id=invocation_id, function_id=fn.function_id,
                input_data=[protos.ParameterBinding(name=fn.trigger_param, data=protos.TypedData(http=http))],
                trace_context=protos.RpcTraceContext(trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"))))
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("x-ms-invocation-id", invocation_id))
        forwarded = self._client.build_request(request.method, request.url.path, params=request.url.query,
                                               headers=headers, content=await request.body())
        upstream = await self._client.send(forwarded, stream=True)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}

        self._pending.append(asyncio.ensure_future(self._record(fn.name, invocation_id, answered)))
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=out_headers,
                                 background=BackgroundTask(upstream.aclose))

    async def _record(self, name: str, invocation_id: str, answered: asyncio.Future[Any]) -> None:
        result = await asyncio.wait_for(answered, STEP_TIMEOUT)
        self.invocations.append((name, invocation_id, result.result.status))

    async def settled(self) -> list[tuple[str, str, int]]:
        """Every (function, invocation id, StatusResult.status) once all InvocationResponses are in."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
        return list(self.invocations)

    # ---- shutdown ----
    async def stop(self) -> None:
        if self._front is not None and self._front_task is not None:
            self._front.should_exit = True
            await asyncio.wait_for(self._front_task, 10)
        if self._client is not None:
            await self._client.aclose()
        if self._channel.connected.is_set():
            self._channel.outbound.put_nowait(self.protos.StreamingMessage(
                worker_terminate=self.protos.WorkerTerminate()))
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self._process.wait(), 5)
                except TimeoutError:
                    self._process.kill()
                    await self._process.wait()
        if self._grpc is not None:
            await self._grpc.stop(grace=1)


def _check(result: Any, step: str) -> None:
    if result.status != 1:  # StatusResult.Success
        raise HostError(f"{step} failed: {result.exception.message or result.result}")


def _indexed(fn: Any) -> IndexedFunction:
    bindings = tuple(json.loads(raw) for raw in fn.raw_bindings)
    (trigger,) = [b for b in bindings if b.get("type") == "httpTrigger"]
    return IndexedFunction(
        function_id=fn.function_id, name=fn.name, route=trigger.get("route") or fn.name,
        methods=tuple(m.upper() for m in trigger.get("methods") or ("GET", "POST")),
        auth_level=str(trigger.get("authLevel", "FUNCTION")).upper(), trigger_param=trigger["name"],
        bindings=bindings)
