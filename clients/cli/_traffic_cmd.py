"""The `traffic` command: options, progress bar, report and exit code."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clients.cli._options import (
    DEFAULT_TARGET,
    DEFAULT_URL,
    EXIT_FAILED,
    EXIT_OK,
    Connection,
    JsonOpt,
    SseOpt,
    SystemOpt,
    TargetOpt,
    TimeoutOpt,
    TokenOpt,
    Transport,
    TransportOpt,
    UrlOpt,
    err_console,
    out_console,
    usage_error,
)
from clients.cli._summary import Summary, render_table, summarize
from clients.cli._traffic import Outcome, Planned, expected_statuses, make_plan, run_plan


def traffic(
    requests: Annotated[
        int, typer.Option("-n", "--requests", min=1, help="How many requests to send.")
    ] = 100,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="How many requests in flight at once.")
    ] = 4,
    tenants: Annotated[
        str, typer.Option("--tenants", help="Comma-separated tenants; each request picks one at random.")
    ] = "contoso,fabrikam,acme",
    stream_ratio: Annotated[
        float, typer.Option("--stream-ratio", min=0.0, max=1.0, help="Share of requests sent as streams.")
    ] = 0.3,
    transport: TransportOpt = Transport.rest,
    url: UrlOpt = DEFAULT_URL,
    target: TargetOpt = DEFAULT_TARGET,
    token: TokenOpt = None,
    system: SystemOpt = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed for tenants, kinds and questions (same seed, same plan)."),
    ] = None,
    expect_status: Annotated[
        list[str] | None,
        typer.Option(
            "--expect-status",
            "-e",
            help="A non-success status that is expected, e.g. 429 or RESOURCE_EXHAUSTED (repeatable or "
            "comma-separated; HTTP numbers also match the corresponding gRPC code).",
        ),
    ] = None,
    sse: SseOpt = True,
    timeout: TimeoutOpt = 120.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send N chat/stream requests across tenants with bounded concurrency, then print a per-tenant table.

    Exits 1 if any request ended with a status that is neither success nor listed in --expect-status.
    """
    names = [t.strip() for t in tenants.split(",") if t.strip()]
    if not names:
        usage_error("--tenants needs at least one tenant name")
    plan = make_plan(requests, names, stream_ratio, seed)
    expected = expected_statuses(expect_status or [], transport.value)
    connection = Connection(transport, url, target, token, timeout, sse=sse, max_connections=concurrency)
    try:
        summary = asyncio.run(_drive(connection, plan, concurrency, system, expected, quiet))
    except KeyboardInterrupt:
        err_console().print("interrupted", markup=False)
        raise typer.Exit(130) from None
    _report(summary, as_json)
    raise typer.Exit(EXIT_FAILED if summary.unexpected else EXIT_OK)


async def _drive(
    connection: Connection,
    plan: list[Planned],
    concurrency: int,
    system: str | None,
    expected: frozenset[str],
    quiet: bool,
) -> Summary:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} · failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=err_console(),
        disable=quiet,
    )
    task = progress.add_task(
        f"{connection.transport.value} {connection.describe()}", total=len(plan), ok=0, failed=0
    )
    counts = {"ok": 0, "failed": 0}

    def on_done(outcome: Outcome) -> None:
        counts["ok" if outcome.ok else "failed"] += 1
        progress.update(task, advance=1, ok=counts["ok"], failed=counts["failed"])

    started = time.perf_counter()
    with progress:
        async with connection.open() as client:
            outcomes = await run_plan(client, plan, concurrency, system, on_done)
    return summarize(outcomes, expected, connection.transport.value, time.perf_counter() - started)


def _report(summary: Summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        out_console().print(render_table(summary))
    errors = err_console()
    for line in summary.failures:
        errors.print(f"failed: {line}", markup=False)
    if summary.unexpected:
        errors.print(f"{summary.unexpected} request(s) failed unexpectedly", markup=False)
