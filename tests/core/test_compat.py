"""The compatible API's core: reading a body it passes through, and deployment names."""

from __future__ import annotations

import orjson
import pytest

from core import InvalidRequest, NotFound
from core._compat import DeploymentCatalog, parse_request, prompt_tokens
from core.config import validate_settings


def test_a_stream_without_include_usage_gets_it_spliced_in_and_the_rest_byte_for_byte() -> None:
    body = b'{"messages": [{"role": "user", "content": "Hi"}], "stream": true, "seed": 3,"tools":[]}  \n'
    request = parse_request(body, "chat/completions", "gpt", "2024-10-21")
    assert request.stream and request.usage_added and request.method == "stream"
    assert request.body.startswith(body.rstrip()[:-1])  # the caller's bytes, untouched up to the splice
    assert orjson.loads(request.body)["stream_options"] == {"include_usage": True}


def test_stream_options_the_caller_sent_are_kept_and_completed() -> None:
    asked = parse_request(b'{"stream":true,"stream_options":{"include_usage":true}}', "chat/completions", "d", None)
    assert not asked.usage_added and asked.body == b'{"stream":true,"stream_options":{"include_usage":true}}'
    other = parse_request(b'{"stream":true,"stream_options":{"include_obfuscation":false}}',
                          "chat/completions", "d", None)
    assert other.usage_added
    assert orjson.loads(other.body)["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_a_plain_request_is_sent_unchanged_and_v1_takes_the_deployment_from_model() -> None:
    body = b'{"model":"chat","input":["a","b"]}'
    request = parse_request(body, "embeddings", None, None)
    assert (request.body, request.deployment, request.method) == (body, "chat", "embeddings")


@pytest.mark.parametrize(("body", "operation", "deployment", "version", "message"), [
    (b"{nope", "chat/completions", "d", None, "JSON"),
    (b"[1]", "chat/completions", "d", None, "JSON object"),
    (b'{"messages":[]}', "chat/completions", None, None, "'model'"),
    (b'{"stream":"yes"}', "chat/completions", "d", None, "'stream'"),
    (b'{"stream":true}', "embeddings", "d", None, "not allowed for embeddings"),
    (b"{}", "chat/completions", "d", "latest; drop table", "api-version"),
])
def test_bodies_the_gateway_cannot_read_are_invalid(body: bytes, operation: str, deployment: str | None,
                                                    version: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_request(body, operation, deployment, version)  # type: ignore[arg-type]


def test_the_estimate_counts_the_prompt_and_the_completion_budget() -> None:
    document = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
                "max_completion_tokens": 50}
    request = parse_request(orjson.dumps(document), "chat/completions", "d", None)
    assert request.estimate() == prompt_tokens(document) + 50
    assert prompt_tokens(document) > 3 + 3  # message overhead + reply priming + the text


def _settings() -> object:
    return validate_settings({"azureopenai": {"services": {
        "Alpha": {"endpoint": "http://a/", "apikey": "k", "deployment": "gpt4o-prod", "model": "gpt-4o",
                  "deployments": {"Embed": "text-embedding-3-small"}},
        "Beta": {"endpoint": "http://b/", "apikey": "k", "deployment": "gpt-4o", "model": "gpt-4o"},
    }}})


def test_a_client_name_is_served_by_model_deployment_or_the_explicit_map() -> None:
    catalog = DeploymentCatalog(_settings(), ("Alpha", "Beta"))  # type: ignore[arg-type]
    assert dict(catalog.serving("gpt-4o")) == {"Alpha": "gpt4o-prod", "Beta": "gpt-4o"}
    assert dict(catalog.serving("GPT4O-PROD")) == {"Alpha": "gpt4o-prod"}
    assert dict(catalog.serving("embed")) == {"Alpha": "text-embedding-3-small"}
    with pytest.raises(NotFound, match=r"'gpt-9'.*deployments: embed, gpt-4o, gpt4o-prod"):
        catalog.serving("gpt-9")


def test_only_usable_instances_serve() -> None:
    catalog = DeploymentCatalog(_settings(), ("Beta",))  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        catalog.serving("embed")


def test_counting_a_deeply_nested_body_does_not_recurse() -> None:
    body = b'{"model":"m","input":' + b'[{"content":' * 500 + b'"x"' + b"}]" * 500 + b"}"
    request = parse_request(body, "responses", None, None)  # 1,000 levels: orjson reads it
    assert request.estimate() >= 0
