"""`compat-chat` and `compat-embed`: the gateway's Azure OpenAI-compatible API through the official
``openai`` SDK, exactly as an existing app calls it (``AzureOpenAI``, or ``OpenAI`` with ``--v1``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import openai
import typer

from clients.cli._options import DEFAULT_URL, JsonOpt, SystemOpt, TenantOpt, TimeoutOpt, UrlOpt, err_console

DeploymentOpt = Annotated[str, typer.Option("--deployment", "-d", help="Deployment name (Azure) or model (v1).")]
V1Opt = Annotated[bool, typer.Option("--v1", help="Use OpenAI(base_url=<url>/openai/v1) instead of AzureOpenAI.")]
ApiKeyOpt = Annotated[str, typer.Option("--api-key", envvar="GATEWAY_API_KEY",
                                        help="The caller's api-key (a tenant key once Auth:Mode keys is on).")]
VersionOpt = Annotated[str, typer.Option("--api-version", help="api-version for AzureOpenAI.")]


def _client(url: str, tenant: str | None, api_key: str, api_version: str, v1: bool, timeout: float) -> Any:
    headers = {"X-Tenant": tenant} if tenant else {}
    if v1:
        return openai.OpenAI(base_url=f"{url.rstrip('/')}/openai/v1", api_key=api_key,
                             default_headers=headers, timeout=timeout, max_retries=0)
    return openai.AzureOpenAI(azure_endpoint=url, api_key=api_key, api_version=api_version,
                              default_headers=headers, timeout=timeout, max_retries=0)


def _fail(exc: openai.OpenAIError) -> None:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", str(exc))
    err_console().print(f"error{f' {status}' if status else ''}: {message}", markup=False)
    raise typer.Exit(1)


def compat_chat(
    message: Annotated[list[str], typer.Argument(help="The question (words are joined).")],
    deployment: DeploymentOpt = "gpt-35-turbo-16k",
    tenant: TenantOpt = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = "none",
    api_version: VersionOpt = "2024-10-21",
    v1: V1Opt = False,
    stream: Annotated[bool, typer.Option("--stream", help="Stream the answer as it arrives.")] = False,
    system: SystemOpt = None,
    timeout: TimeoutOpt = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Chat completion through the compatible API with the openai SDK."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": " ".join(message)}]
    client = _client(url, tenant, api_key, api_version, v1, timeout)
    try:
        if stream:
            for chunk in client.chat.completions.create(model=deployment, messages=messages, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    sys.stdout.write(chunk.choices[0].delta.content)
                    sys.stdout.flush()
            sys.stdout.write("\n")
            return
        reply = client.chat.completions.create(model=deployment, messages=messages)
    except openai.OpenAIError as exc:
        _fail(exc)
        return
    if as_json:
        print(reply.model_dump_json())
    else:
        print(reply.choices[0].message.content or "")


def compat_embed(
    text: Annotated[list[str], typer.Argument(help="Texts to embed (one embedding each).")],
    deployment: DeploymentOpt = "text-embedding-3-small",
    tenant: TenantOpt = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = "none",
    api_version: VersionOpt = "2024-10-21",
    v1: V1Opt = False,
    timeout: TimeoutOpt = 120.0,
) -> None:
    """Embeddings through the compatible API: prints dimensions and usage as JSON."""
    client = _client(url, tenant, api_key, api_version, v1, timeout)
    try:
        result = client.embeddings.create(model=deployment, input=list(text))
    except openai.OpenAIError as exc:
        _fail(exc)
        return
    print(json.dumps({"dimensions": [len(d.embedding) for d in result.data],
                      "prompt_tokens": result.usage.prompt_tokens, "model": result.model}))
