"""compat-chat / compat-embed: the CLI drives the compatible API through the official openai SDK."""

from __future__ import annotations

import json

from clients_stack import LocalRun
from typer.testing import CliRunner

from clients.cli import app

DEPLOYMENT = "gpt-35-turbo-16k"


def run_cli(run: LocalRun, *args: str) -> tuple[int, str]:
    assert run.rest_url is not None, "the local run did not start the REST app"
    result = CliRunner().invoke(app, [*args, "--url", run.rest_url])
    return result.exit_code, result.output


def test_compat_chat_azure_and_v1_reach_the_tenants_instance(run: LocalRun) -> None:
    before = run.sim_requests()
    code, out = run_cli(run, "compat-chat", "Tell", "me", "about", "Lucca", "-t", "fabrikam", "-d", DEPLOYMENT)
    assert code == 0, out
    assert len(out.split()) >= 3
    code, out = run_cli(run, "compat-chat", "Hi", "-t", "fabrikam", "-d", DEPLOYMENT, "--v1", "--json")
    assert code == 0, out
    assert json.loads(out)["usage"]["total_tokens"] > 0
    code, streamed = run_cli(run, "compat-chat", "Hi", "-t", "fabrikam", "-d", DEPLOYMENT, "--stream")
    assert code == 0, streamed
    assert streamed.strip()
    after = run.sim_requests()
    assert after["betaopenai"] - before["betaopenai"] == 3  # fabrikam -> BetaOpenAI


def test_compat_embed_prints_dimensions_and_usage(run: LocalRun) -> None:
    code, out = run_cli(run, "compat-embed", "Milan", "Pisa", "-t", "contoso", "-d", DEPLOYMENT)
    assert code == 0, out
    doc = json.loads(out)
    assert doc["dimensions"] == [1536, 1536] and doc["prompt_tokens"] > 0


def test_compat_unknown_deployment_fails_naming_it(run: LocalRun) -> None:
    code, out = run_cli(run, "compat-chat", "Hi", "-t", "contoso", "-d", "gpt-9")
    assert code == 1
    assert "error 404" in out and "gpt-9" in out
