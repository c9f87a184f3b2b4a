"""echo / chat / stream / interactive against the local run (simulators + gateway), REST and gRPC."""

from __future__ import annotations

import json
import subprocess
import sys

import jwt
import pytest
from clients_helpers import cli, endpoint_args
from clients_stack import ROOT, LocalRun

TRANSPORTS = ["grpc", "rest"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, run: LocalRun) -> str:
    assert run.rest_url is not None, "the local run did not start the REST app"
    return str(request.param)


def test_echo_prints_the_gateway_answer(run: LocalRun, transport: str) -> None:
    result = cli(run, transport, "echo", "42", "--tenant", " Contoso ")
    assert result.exit_code == 0, result.output
    assert result.stdout == "tenant: contoso value: 42\n"


def test_chat_prints_the_completion_from_the_mapped_instance(run: LocalRun, transport: str) -> None:
    before = run.sim_requests()
    plain = cli(run, transport, "chat", "Tell", "me", "about", "Lucca", "--tenant", "fabrikam")
    assert plain.exit_code == 0, plain.output
    answer = plain.stdout.strip()
    assert len(answer.split()) >= 3
    after = run.sim_requests()
    assert after["betaopenai"] - before["betaopenai"] == 1  # fabrikam -> BetaOpenAI
    assert after["alphaopenai"] == before["alphaopenai"]


def test_chat_reads_the_question_from_stdin_and_prints_json(run: LocalRun, transport: str) -> None:
    result = cli(run, transport, "chat", "--tenant", "contoso", "--json", stdin="What is a token?\n")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["transport"] == transport
    assert doc["text"].strip()
    if transport == "rest":  # the REST app reports the instance and the usage in headers
        assert doc["instance"].lower() == "alphaopenai"
        assert doc["usage"]["prompt_tokens"] > 0
        assert (
            doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]
        )


def test_stream_prints_the_tokens_and_they_add_up_to_the_answer(run: LocalRun, transport: str) -> None:
    question = "Which dishes should I try in Parma?"
    for wire in (
        ["--sse", "--json-array"] if transport == "rest" else ["--sse"]
    ):  # the wire option is REST-only
        shown = cli(run, transport, "stream", question, "-t", "contoso", wire)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.endswith("\n") and len(shown.stdout.split()) >= 3
        as_json = cli(run, transport, "stream", question, "-t", "contoso", wire, "--json")
        assert as_json.exit_code == 0, as_json.output
        doc = json.loads(as_json.stdout)
        assert doc["chunks"] > 1  # it really streamed, piece by piece
        assert doc["text"].strip()
        if transport == "rest" and wire == "--sse":  # SSE carries the usage event
            assert doc["usage"]["completion_tokens"] > 0


def test_rate_limited_request_is_one_readable_line_and_exit_1(run: LocalRun, transport: str) -> None:
    run.set_fault("AlphaOpenAI", status=429, count=1, retry_after_ms=2000)
    result = cli(run, transport, "chat", "hello", "--tenant", "contoso")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected_status = "429" if transport == "rest" else "RESOURCE_EXHAUSTED"
    assert lines[0].startswith(f"error: {expected_status}")
    assert "retry after 2s" in lines[0]
    assert "Traceback" not in result.output


def test_json_error_document_for_scripts(run: LocalRun, transport: str) -> None:
    run.set_fault("BetaOpenAI", status=503, count=1)
    result = cli(run, transport, "stream", "hello", "--tenant", "fabrikam", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["status"] == ("503" if transport == "rest" else "UNAVAILABLE")
    assert error["detail"]


def test_unreachable_gateway_is_reported_not_a_traceback(run: LocalRun, transport: str) -> None:
    from localrun.ports import free_port

    dead = (
        ["--url", f"http://127.0.0.1:{free_port()}"]
        if transport == "rest"
        else ["--target", f"127.0.0.1:{free_port()}"]
    )
    result = cli(run, transport, "echo", "1", "-t", "acme", *dead)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: connect-error: cannot connect to ")
    assert dead[1] in result.stderr
    assert "Traceback" not in result.output


def test_token_carries_the_tenant_and_is_never_printed(run: LocalRun, transport: str) -> None:
    token = jwt.encode({"tenant": "Contoso", "sub": "cli-test"}, "test-signing-key-0123456789abcdef")
    before = run.sim_requests()
    result = cli(run, transport, "chat", "hi", "--token", token, "--verbose")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert run.sim_requests()["alphaopenai"] - before["alphaopenai"] == 1  # contoso -> AlphaOpenAI
    assert token not in result.output


def test_token_without_tenant_is_refused_and_never_printed(run: LocalRun, transport: str) -> None:
    token = jwt.encode({"sub": "nobody"}, "test-signing-key-0123456789abcdef")
    result = cli(run, transport, "stream", "hi", "--token", token, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["status"] in ("401", "UNAUTHENTICATED")
    assert "tenant" in result.stderr
    assert token not in result.output
    assert token.split(".")[-1] not in result.output


def test_usage_errors_exit_2(run: LocalRun) -> None:
    no_tenant = cli(run, "grpc", "echo", "1")
    assert no_tenant.exit_code == 2
    assert "--tenant" in no_tenant.stderr
    not_a_number = cli(run, "grpc", "echo", "seven", "-t", "acme")
    assert not_a_number.exit_code == 2
    empty = cli(run, "grpc", "chat", "-t", "acme", stdin="   \n")
    assert empty.exit_code == 2
    assert "empty" in empty.stderr


def test_interactive_keeps_the_conversation_and_switches_transport(run: LocalRun, transport: str) -> None:
    other = "rest" if transport == "grpc" else "grpc"
    commands = ["Tell me about Siena", "/echo 7", "/stream off", "And its history?", "/history", "/quit"]
    if run.rest_url is not None:
        commands.insert(-1, f"/transport {other}")
        commands.insert(-1, "One more question")
    result = cli(run, transport, "interactive", "--tenant", "acme", stdin="\n".join(commands) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "tenant: acme value: 7" in out
    assert "user: Tell me about Siena" in out
    assert "user: And its history?" in out
    assert out.count("assistant: ") == 2  # both answers were kept in the history
    assert "error" not in out


def test_module_entry_point_and_help_document_the_options() -> None:
    """`python -m clients.cli` as a real process: --help lists every option and the exit codes."""
    shown = subprocess.run(
        [sys.executable, "-m", "clients.cli", "traffic", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert shown.returncode == 0, shown.stderr
    for option in (
        "--requests",
        "--concurrency",
        "--tenants",
        "--stream-ratio",
        "--transport",
        "--seed",
        "--expect-status",
        "--json",
        "--token",
        "--url",
        "--target",
    ):
        assert option in shown.stdout
    top = subprocess.run(
        [sys.executable, "-m", "clients.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert "Exit codes: 0 success; 1" in top.stdout
    assert "usage error" in top.stdout


def test_endpoint_args_cover_both_transports(run: LocalRun) -> None:
    assert endpoint_args(run, "grpc")[-1] == run.grpc_target
