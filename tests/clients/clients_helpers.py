"""Running the CLI in-process as a user would (typer's CliRunner), against a given transport."""

from __future__ import annotations

from click.testing import Result
from clients_stack import LocalRun
from typer.testing import CliRunner

from clients.cli import app


def endpoint_args(run: LocalRun, transport: str) -> list[str]:
    """Both endpoints, so that interactive mode can switch; the transport picks which one is used."""
    url = ["--url", run.rest_url] if run.rest_url is not None else []
    return ["--transport", transport, *url, "--target", run.grpc_target]


def cli(run: LocalRun, transport: str, command: str, *args: str, stdin: str | None = None) -> Result:
    """`python -m clients.cli COMMAND --transport T --url/--target ... ARGS` in-process."""
    return CliRunner().invoke(app, [command, *endpoint_args(run, transport), *args], input=stdin)


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of a rich table printed on stdout, keyed by their first cell."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "│" not in line:
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return rows
