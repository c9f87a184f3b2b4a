"""Chat completions (JSON) through the real `openai` SDK over real HTTP."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from simulator import SimulatorServer

DEPLOYMENT = "gpt-35-turbo-16k"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?", "name": "alice"},
]


async def test_completion_has_azure_shape_and_exact_usage(client: openai.AsyncAzureOpenAI, tokens) -> None:
    result = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)

    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == DEPLOYMENT
    text = result.choices[0].message.content
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].finish_reason == "stop"
    assert text and text[-1] in ".!?"
    assert result.usage is not None
    assert result.usage.prompt_tokens == tokens.prompt(MESSAGES)
    assert result.usage.completion_tokens == tokens.count(text)
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert 5 <= result.usage.completion_tokens <= 80
    assert result.model_extra is not None and "prompt_filter_results" in result.model_extra


async def test_same_seed_same_text_other_seed_other_text(start_sim, make_client) -> None:
    texts = []
    for seed in (7, 7, 8):
        sdk = make_client(await start_sim(seed=seed))
        result = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
        texts.append(result.choices[0].message.content)
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]


async def test_different_prompts_give_different_texts(client: openai.AsyncAzureOpenAI) -> None:
    answers = set()
    for question in ("one", "two", "three"):
        result = await client.chat.completions.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": question}]
        )
        answers.add(result.choices[0].message.content)
    assert len(answers) == 3


async def test_max_tokens_caps_the_completion(client: openai.AsyncAzureOpenAI, tokens) -> None:
    result = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, max_tokens=4)

    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == tokens.count(result.choices[0].message.content or "") <= 4


async def test_bearer_token_is_accepted(sim: SimulatorServer, make_client) -> None:
    sdk = make_client(sim, api_key=None, azure_ad_token="any-entra-token")
    result = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    assert result.choices[0].message.content


async def test_bearer_refused_when_disabled(start_sim, make_client) -> None:
    sdk = make_client(await start_sim(accept_bearer=False), api_key=None, azure_ad_token="any-entra-token")
    with pytest.raises(openai.AuthenticationError):
        await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)


async def test_wrong_api_key_is_401_without_echoing_the_key(sim: SimulatorServer, make_client) -> None:
    sdk = make_client(sim, api_key="wrong-key-123")
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "401"
    assert "wrong-key-123" not in caught.value.response.text


async def test_unknown_deployment_is_404(client: openai.AsyncAzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="no-such-deployment", messages=MESSAGES)
    assert caught.value.body["code"] == "DeploymentNotFound"


async def test_invalid_parameters_are_400(client: openai.AsyncAzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES, temperature=5)
    assert caught.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=DEPLOYMENT, messages=[])


async def test_raw_http_errors_are_azure_json(sim: SimulatorServer) -> None:
    url = f"{sim.url}openai/deployments/{DEPLOYMENT}/chat/completions"
    headers = {"api-key": "sim-key-alpha", "content-type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"{}", headers=headers) as missing_version:
            assert missing_version.status == 404
            assert "api-version" in (await missing_version.json())["error"]["message"]
        async with http.post(
            url, params={"api-version": "2024-06-01"}, data=b"{not json", headers=headers
        ) as bad:
            assert bad.status == 400
            assert (await bad.json())["error"]["code"] == "BadRequest"
        async with http.get(f"{sim.url}openai/models", headers=headers) as unknown:
            assert unknown.status == 404
            assert (await unknown.json())["error"]["code"] == "404"
        async with http.get(f"{sim.url}healthz") as health:
            assert health.status == 200


async def test_aiohttp_transport_of_the_sdk_works(sim: SimulatorServer, make_client, tokens) -> None:
    sdk = make_client(sim, http_client=openai.DefaultAioHttpClient())
    result = await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    assert result.usage is not None
    assert result.usage.completion_tokens == tokens.count(result.choices[0].message.content or "")
