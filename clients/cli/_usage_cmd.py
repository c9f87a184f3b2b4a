"""``usage``: the gateway's usage ledger (``GET /admin/usage``) as a table, JSON or CSV."""

from __future__ import annotations

import sys
from typing import Annotated

import httpx
import typer
from rich.table import Table

from clients.cli._options import DEFAULT_URL, TenantOpt, TimeoutOpt, TokenOpt, UrlOpt, err_console, out_console

FromOpt = Annotated[str | None, typer.Option("--from", help="ISO 8601 date or time, UTC (default: 1st of month).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="ISO 8601 date or time, exclusive (default: now).")]
GroupOpt = Annotated[str, typer.Option("--group-by", help="hour or day.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table, json or csv.")]


def usage(
    tenant: TenantOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    group_by: GroupOpt = "day",
    fmt: FormatOpt = "table",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Print the usage ledger: requests, tokens (reported by Azure vs counted) and cost per tenant and period."""
    if fmt not in ("table", "json", "csv"):
        err_console().print("--format must be table, json or csv", markup=False)
        raise typer.Exit(2)
    params = {k: v for k, v in {"tenant": tenant, "from": start, "to": end, "groupBy": group_by,
                                "format": "csv" if fmt == "csv" else "json"}.items() if v}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/admin/usage", params=params, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        err_console().print(f"cannot reach the gateway at {url} ({type(exc).__name__})", markup=False)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        detail = response.text[:300]
        try:
            body = response.json()
            detail = body.get("detail") or body.get("error", {}).get("message") or detail
        except ValueError:
            pass
        err_console().print(f"[{response.status_code}] {detail}", markup=False)
        raise typer.Exit(1)
    if fmt != "table":
        sys.stdout.write(response.text if fmt == "csv" else response.text + "\n")
        return
    rows = response.json()["rows"]
    table = Table(title=f"usage {response.json()['from']} .. {response.json()['to']} by {group_by}")
    for column in ("tenant", "period", "instance", "deployment", "requests", "prompt", "completion", "total",
                   "counted", "cost"):
        table.add_column(column, justify="right" if column not in ("tenant", "instance", "deployment") else "left")
    for row in rows:
        table.add_row(row["tenant"], row["period"], row["instance"], row["deployment"], f"{row['requests']:,}",
                      f"{row['prompt_tokens']:,}", f"{row['completion_tokens']:,}", f"{row['total_tokens']:,}",
                      f"{row['counted_tokens']:,}", f"{row['cost']:.4f}")
    out_console().print(table)
