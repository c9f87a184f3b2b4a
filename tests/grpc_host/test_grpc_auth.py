"""Authenticated tenants on the gRPC host: credentials in metadata (``authorization``, ``api-key``),
a real local token issuer (JWKS), the simulators behind the real host. Same matrix as REST."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from auth_support import AUDIENCE, Issuer, SigningKey, new_tenant_key
from grpc_support import HostProcess, Sims, StartHost, chat_request, gateway_environ, gateway_json
from prometheus_client.parser import text_string_to_metric_families

from core import load_settings
from grpc_host import RunningHost
from protos import openai_pb2, openai_pb2_grpc

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.fixture
async def issuer(signing_key: SigningKey) -> AsyncIterator[Issuer]:
    server = await Issuer([signing_key]).start()
    yield server
    await server.stop()


@pytest.fixture
def keys() -> dict[str, tuple[str, str]]:
    return {t: new_tenant_key(t) for t in ("acme", "acme-next", "metrics")}


def jwt_env(issuer: Issuer, **extra: str) -> dict[str, str]:
    return {"Auth__Mode": "jwt", "Auth__Jwt__Issuer": issuer.issuer, "Auth__Jwt__Audience": AUDIENCE,
            "Auth__Jwt__RefreshIntervalSeconds": "0", **extra}


async def start(start_grpc_host: StartHost, sims: Sims, **environ: str) -> RunningHost:
    return await start_grpc_host(load_settings(environ=gateway_environ(sims, **environ)))


def stub_for(host: RunningHost, channels: list[grpc.aio.Channel]) -> openai_pb2_grpc.OpenAIServiceGrpcStub:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    channels.append(channel)
    return openai_pb2_grpc.OpenAIServiceGrpcStub(channel)


@pytest.fixture
async def channels() -> AsyncIterator[list[grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []
    yield opened
    for channel in opened:
        await channel.close()


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


async def billed(host: RunningHost, headers: dict[str, str] | None = None) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        page = await client.get(f"http://127.0.0.1:{host.metrics_port}/metrics", headers=headers or {})
    assert page.status_code == 200, page.text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(page.text):
        for sample in family.samples:
            if sample.name == "openai_total_tokens_total":
                totals[sample.labels["tenant_name"]] = totals.get(sample.labels["tenant_name"], 0) + sample.value
    return totals


async def test_a_valid_token_is_served_and_billed_to_its_tenant(start_grpc_host, sims, issuer, channels) -> None:
    host = await start(start_grpc_host, sims, **jwt_env(issuer))
    stub = stub_for(host, channels)
    token = issuer.token("Contoso")
    reply = await stub.GetChatCompletions(chat_request("", ("user", "Hi")), metadata=bearer(token))
    parts = [m.message async for m in stub.GetChatCompletionsStreaming(chat_request("contoso"), metadata=bearer(token))]
    denied = await failure(stub.GetChatCompletions(chat_request("fabrikam"), metadata=bearer(token)))
    spoofed = await failure(stub.Echo(openai_pb2.EchoRequest(value=1),
                                      metadata=(*bearer(token), ("x-tenant", "fabrikam"))))
    anonymous = await failure(stub.GetChatCompletions(chat_request("contoso")))
    assert reply.result and parts
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED and "'tenant' field names another" in denied.details()
    assert spoofed.code() == grpc.StatusCode.PERMISSION_DENIED and "x-tenant metadata" in spoofed.details()
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED and "no credentials" in anonymous.details()
    assert set(await billed(host)) == {"contoso"}
    assert sims.alpha.stats.requests == 2 and sims.beta.stats.requests == 0


async def test_every_forged_or_broken_token_is_unauthenticated(
    start_grpc_host, sims, issuer, signing_key, channels
) -> None:
    host = await start(start_grpc_host, sims, **jwt_env(issuer))
    stub = stub_for(host, channels)
    now = int(time.time())
    cases = {
        "alg none": (issuer.unsigned_token(), "only RS256 and ES256"),
        "HS256 with the public key": (issuer.hs256_with_public_key(), "only RS256 and ES256"),
        "wrong key, same kid": (issuer.token(key=SigningKey.generate("RS256", kid=signing_key.kid)), "signature"),
        "expired": (issuer.token(exp=now - 300, iat=now - 900, nbf=now - 900), "expired"),
        "not yet valid": (issuer.token(nbf=now + 600), "not valid yet"),
        "wrong aud": (issuer.token(aud="api://another-app"), "another audience"),
        "wrong iss": (issuer.token(iss="https://login.microsoftonline.com/evil/v2.0"), "another issuer"),
        "missing tenant claim": (issuer.token(None), "no 'tenant' claim"),
        "garbage": ("Bearer-not-a-token", "not a well-formed JWT"),
    }
    for name, (token, reason) in cases.items():
        for call in (stub.Echo(openai_pb2.EchoRequest(value=1), metadata=bearer(token)),
                     stub.GetChatCompletionsStreaming(chat_request(""), metadata=bearer(token)).read()):
            error = await failure(call)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
            assert reason in error.details() and token not in error.details(), name
    assert sims.alpha.stats.requests + sims.beta.stats.requests == 0


async def test_rotation_is_picked_up_and_jwks_down_is_unavailable(start_grpc_host, sims, issuer, channels) -> None:
    host = await start(start_grpc_host, sims, **jwt_env(issuer))
    stub = stub_for(host, channels)
    assert (await stub.Echo(openai_pb2.EchoRequest(value=1), metadata=bearer(issuer.token("acme")))).message
    rotated = SigningKey.generate("ES256")
    issuer.keys.append(rotated)
    reply = await stub.Echo(openai_pb2.EchoRequest(value=2), metadata=bearer(issuer.token("acme", key=rotated)))
    assert reply.message == "tenant: acme value: 2"
    await issuer.stop()
    error = await failure(stub.Echo(openai_pb2.EchoRequest(value=3),
                                    metadata=bearer(issuer.token("acme", kid="kid-after-the-outage"))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and issuer.issuer in error.details()
    trailers = dict(error.trailing_metadata() or ())
    assert int(trailers["retry-after"]) >= 1


async def test_tenant_keys_in_metadata_and_the_metrics_key(start_grpc_host, sims, keys, channels) -> None:
    host = await start(start_grpc_host, sims, Auth__Mode="keys", Auth__MetricsKey=keys["metrics"][1],
                       Auth__Keys__acme=f"{keys['acme'][1]};{keys['acme-next'][1]}")
    stub = stub_for(host, channels)
    by_api_key = await stub.GetChatCompletions(chat_request("acme"), metadata=(("api-key", keys["acme"][0]),))
    by_bearer = await stub.Echo(openai_pb2.EchoRequest(value=1), metadata=bearer(keys["acme-next"][0]))
    other = await failure(stub.Echo(openai_pb2.EchoRequest(tenant="fabrikam", value=1),
                                    metadata=(("api-key", keys["acme"][0]),)))
    unknown = await failure(stub.Echo(openai_pb2.EchoRequest(value=1), metadata=(("api-key", "gwk_" + "y" * 40),)))
    assert by_api_key.result and by_bearer.message == "tenant: acme value: 1"
    assert other.code() == grpc.StatusCode.PERMISSION_DENIED
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED and "unknown API key" in unknown.details()
    assert set(await billed(host, {"Authorization": f"Bearer {keys['metrics'][0]}"})) == {"acme"}
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"http://127.0.0.1:{host.metrics_port}/metrics",
                                   headers={"Authorization": f"Bearer {keys['acme'][0]}"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "Auth:MetricsKey" in refused.json()["detail"] and keys["acme"][0] not in refused.text


async def test_mode_none_keeps_the_c_sharp_request_fields(start_grpc_host, sims, channels) -> None:
    stub = stub_for(await start(start_grpc_host, sims), channels)
    reply = await stub.Echo(openai_pb2.EchoRequest(tenant="Contoso", value=1), metadata=(("x-tenant", "other"),))
    assert reply.message == "tenant: contoso value: 1"


@pytest.mark.slow
async def test_the_real_process_logs_refusals_without_any_credential(sims, keys, host_process) -> None:
    """``python -m grpc_host`` with its own logging: refusals are logged (one line each), keys never
    (the process's stderr also goes through the suite-wide secret scan)."""
    settings = {**gateway_json(sims), "Auth": {"Mode": "keys", "Keys": {"acme": keys["acme"][1]}}}
    proc: HostProcess = await host_process(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
        stub = openai_pb2_grpc.OpenAIServiceGrpcStub(channel)
        assert (await stub.Echo(openai_pb2.EchoRequest(value=1), metadata=(("api-key", keys["acme"][0]),))).message
        wrong = await failure(stub.Echo(openai_pb2.EchoRequest(value=1), metadata=bearer(keys["acme-next"][0])))
        other = await failure(stub.Echo(openai_pb2.EchoRequest(tenant="x", value=1),
                                        metadata=(("api-key", keys["acme"][0]),)))
    assert (wrong.code(), other.code()) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    proc.process.terminate()
    await proc.wait()
    log = "".join(proc.log)
    assert "Echo failed: UNAUTHENTICATED" in log and "Echo failed: PERMISSION_DENIED" in log
    assert "any caller can claim any tenant" not in log  # the Auth:Mode=none warning is for none only
    assert not [k for k in (keys["acme"][0], keys["acme-next"][0], keys["acme"][1][7:]) if k in log]
