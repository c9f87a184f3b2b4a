"""The traffic generator against the local run: its report matches what the gateway counted."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from clients_helpers import cli, table_rows
from clients_stack import LocalRun, scrape, tenant_tokens

from clients.cli._traffic import make_plan

TENANTS = ["contoso", "fabrikam", "acme"]
SUCCESS = {"rest": "200", "grpc": "OK"}
CHAT_ROUTES = {
    "rest": ("chat", "stream"),
    "grpc": (
        "/OpenAiRestApi.OpenAIServiceGrpc/GetChatCompletions",
        "/OpenAiRestApi.OpenAIServiceGrpc/GetChatCompletionsStreaming",
    ),
}


@pytest.fixture(params=["grpc", "rest"])
def transport(request: pytest.FixtureRequest, run: LocalRun) -> str:
    assert run.rest_url is not None, "the local run did not start the REST app"
    return str(request.param)


def metrics_url(run: LocalRun, transport: str) -> str:
    return f"{run.rest_url}/metrics" if transport == "rest" else run.grpc_metrics_url


def requests_counted(samples: dict, transport: str, status: str) -> float:  # type: ignore[type-arg]
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "gateway_requests_total"
        and dict(labels).get("route") in CHAT_ROUTES[transport]
        and dict(labels).get("status") == status
    )


def test_seeded_run_reports_per_tenant_figures_the_gateway_agrees_with(run: LocalRun, transport: str) -> None:
    before, sims_before = scrape(metrics_url(run, transport)), run.sim_requests()
    args = ["-n", "30", "--concurrency", "5", "--seed", "11", "--stream-ratio", "0.4", "--json", "-q"]
    result = cli(run, transport, "traffic", "--tenants", ",".join(TENANTS), *args)
    assert result.exit_code == 0, result.output
    after, sims_after = scrape(metrics_url(run, transport)), run.sim_requests()
    report = json.loads(result.stdout)

    # The seed decides who asks what: the same plan as make_plan computes.
    planned = Counter(item.tenant for item in make_plan(30, TENANTS, 0.4, 11))
    assert {t: f["requests"] for t, f in report["tenants"].items()} == dict(planned)
    assert report["totals"]["statuses"] == {SUCCESS[transport]: 30}
    assert report["unexpected_failures"] == 0
    ok = SUCCESS[transport]
    assert requests_counted(after, transport, ok) - requests_counted(before, transport, ok) == 30

    # Tokens per tenant: exactly what the gateway's counters grew by (when the host reports usage).
    prompt = {t: f["prompt_tokens"] for t, f in report["tenants"].items()}
    completion = {t: f["completion_tokens"] for t, f in report["tenants"].items()}
    if transport == "rest" or report["totals"]["requests_with_usage"]:
        assert report["totals"]["requests_with_usage"] == 30
        assert prompt == tenant_tokens(before, after, "openai_prompt_tokens_total")
        assert completion == tenant_tokens(before, after, "openai_completion_tokens_total")
    else:  # the gRPC host sends no usage metadata: shown as n/a, never invented
        assert set(prompt.values()) == {None}

    # Instance split: every request the table attributes to an instance reached that simulator.
    split = Counter[str]()
    for figures in report["tenants"].values():
        for instance, count in figures["instances"].items():
            split[instance.lower()] += count
    if "n/a" not in split:
        assert dict(split) == {k: v - sims_before[k] for k, v in sims_after.items() if v - sims_before[k]}
        assert report["tenants"]["contoso"]["instances"].keys() <= {"AlphaOpenAI", "alphaopenai"}
        assert report["tenants"]["fabrikam"]["instances"].keys() <= {"BetaOpenAI", "betaopenai"}
    assert sum(sims_after.values()) - sum(sims_before.values()) == 30


def test_failures_fail_the_run_unless_expected_and_show_in_the_table(run: LocalRun, transport: str) -> None:
    limited = "429" if transport == "rest" else "RESOURCE_EXHAUSTED"
    # retry-after 0 ms: the gateway cools an instance for the time it asks (docs/failover.md), so
    # exactly the two faulted requests fail, not a later request that comes while it cools
    run.set_fault("AlphaOpenAI", status=429, count=2, retry_after_ms=0)
    args = ["--tenants", "contoso,fabrikam", "-n", "12", "-c", "1", "--seed", "5", "--stream-ratio", "0.5"]
    unexpected = cli(run, transport, "traffic", *args)
    assert unexpected.exit_code == 1
    assert "2 request(s) failed unexpectedly" in unexpected.stderr
    rows = table_rows(unexpected.stdout)
    assert f"{limited}×2" in rows["contoso"][2]
    assert rows["TOTAL"][1] == "12"
    assert f"{limited}×2" in rows["TOTAL"][2]
    assert "fabrikam" in rows and limited not in rows["fabrikam"][2]
    assert int(rows["contoso"][1]) + int(rows["fabrikam"][1]) == 12

    # retry-after 0 ms: the gateway cools an instance for the time it asks (docs/failover.md), so
    # exactly the two faulted requests fail, not a later request that comes while it cools
    run.set_fault("AlphaOpenAI", status=429, count=2, retry_after_ms=0)
    expected = cli(run, transport, "traffic", *args, "--expect-status", "429", "--json", "-q")
    assert expected.exit_code == 0, expected.output
    report = json.loads(expected.stdout)
    assert report["tenants"]["contoso"]["statuses"][limited] == 2
    assert report["unexpected_failures"] == 0


def test_unreachable_gateway_fails_every_request_with_exit_1(run: LocalRun) -> None:
    from localrun.ports import free_port

    result = cli(run, "grpc", "traffic", "-n", "4", "-q", "--target", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    assert table_rows(result.stdout)["TOTAL"][2] == "connect-error×4"
    assert "4 request(s) failed unexpectedly" in result.stderr


def test_plan_is_reproducible_and_mixes_kinds() -> None:
    first, again = make_plan(200, TENANTS, 0.3, 42), make_plan(200, TENANTS, 0.3, 42)
    assert first == again
    assert {p.tenant for p in first} == set(TENANTS)
    streams = sum(p.kind == "stream" for p in first)
    assert 30 < streams < 90
    assert len({p.question for p in first}) > 20
