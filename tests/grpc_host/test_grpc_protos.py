"""The committed generated code matches the protos, and openai.proto is the C# sample's contract."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from protos import openai_pb2

REPO = Path(__file__).resolve().parents[2]
PROTOS = sorted(p.stem for p in (REPO / "protos").glob("*.proto"))
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    subprocess.run([str(REPO / "scripts" / "gen-protos.sh"), "--out", str(out)], check=True, timeout=120)
    return out / "protos"


@pytest.mark.parametrize("proto", PROTOS)
def test_generated_code_is_up_to_date(regenerated: Path, proto: str) -> None:
    stale = []
    for suffix in SUFFIXES:
        committed = REPO / "protos" / f"{proto}{suffix}"
        fresh = regenerated / f"{proto}{suffix}"
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            stale.append(committed.name)
    assert not stale, f"stale generated code {stale}: run scripts/gen-protos.sh and commit the result"


def test_openai_proto_keeps_the_csharp_contract() -> None:
    """Same package, service, methods and field numbers as the C# sample, so its clients work."""
    file = openai_pb2.DESCRIPTOR
    assert file.package == "OpenAiRestApi"
    assert file.GetOptions().csharp_namespace == "OpenAiRestApi.Services"
    service = file.services_by_name["OpenAIServiceGrpc"]
    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.server_streaming, m.client_streaming) for m in service.methods
    }
    assert methods == {
        "Echo": ("EchoRequest", "EchoResponse", False, False),
        "GetChatCompletions": ("GetChatCompletionsRequest", "GetChatCompletionsResponse", False, False),
        "GetChatCompletionsStreaming": (
            "GetChatCompletionsRequest", "GetChatCompletionsStreamingResponse", True, False,
        ),
    }  # fmt: skip
    fields = {
        name: {f.name: (f.number, f.type, f.is_repeated) for f in message.fields}
        for name, message in file.message_types_by_name.items()
    }
    string, int32, msg = 9, 5, 11
    optional, repeated = False, True
    conversation = {"tenant": (1, string, optional), "conversation": (2, msg, repeated)}
    assert fields == {
        "EchoRequest": {"tenant": (1, string, optional), "value": (2, int32, optional)},
        "EchoResponse": {"message": (1, string, optional)},
        "GetChatCompletionsRequest": conversation,
        "GetChatCompletionsResponse": {"result": (1, string, optional)},
        "GetChatCompletionsStreamingRequest": conversation,
        "GetChatCompletionsStreamingResponse": {"message": (1, string, optional)},
        "GrpcMessage": {"role": (1, string, optional), "content": (2, string, optional)},
    }
