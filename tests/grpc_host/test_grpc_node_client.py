"""Wire compatibility: a Node.js client (@grpc/grpc-js + protos/openai.proto) calls the host.

Needs ``npm ci --prefix clients/node``. Skipped locally when node_modules is missing; a failure
when ``CI=true``, so CI cannot silently lose the cross-language check.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import jwt
import pytest
from grpc_support import REPO, Sims, chat_request

from grpc_host import RunningHost
from protos import openai_pb2_grpc

CLIENT = REPO / "clients" / "node" / "client.js"
SIGNING_KEY = "node-test-signing-key-32-bytes-long"
MODULES = REPO / "clients" / "node" / "node_modules" / "@grpc" / "grpc-js"


def _require_node() -> str:
    node = shutil.which("node")
    problem = (
        "node is not installed" if node is None
        else "clients/node/node_modules is missing; run `npm ci --prefix clients/node`"
        if not MODULES.is_dir() else ""
    )  # fmt: skip
    if problem:
        pytest.fail(f"{problem} (scripts/bootstrap.sh --dev installs it)")
    assert node is not None
    return node


async def run_client(node: str, host: RunningHost, *args: str) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        node, str(CLIENT), "--target", f"127.0.0.1:{host.port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(REPO),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert out, err.decode()
    return process.returncode or 0, json.loads(out)


@pytest.mark.parametrize(
    ("args", "tenant"),
    [
        (("--tenant", "Contoso"), "contoso"),
        (("--x-tenant", "fabrikam"), "fabrikam"),
        (("--token", jwt.encode({"tenant": "acme"}, SIGNING_KEY, algorithm="HS256")), "acme"),
    ],
    ids=["field", "x-tenant", "jwt"],
)
async def test_node_client_calls_all_three_rpcs(
    host: RunningHost,
    sims: Sims,
    stub: openai_pb2_grpc.OpenAIServiceGrpcStub,
    args: tuple[str, ...],
    tenant: str,
) -> None:
    node = _require_node()
    code, result = await run_client(node, host, *args, "--message", "What is gRPC?", "--value", "12")
    assert code == 0, result
    assert result["echo"] == f"tenant: {tenant} value: 12"
    # The simulator answers deterministically: Node gets exactly what the Python stub gets.
    expected = (await stub.GetChatCompletions(chat_request(tenant, ("user", "What is gRPC?")))).result
    assert result["chat"] == expected
    assert len(result["stream"]) > 1 and "".join(result["stream"]) == expected
    assert result["invalid"]["code"] == "INVALID_ARGUMENT"
    assert "conversation is empty" in result["invalid"]["details"]
