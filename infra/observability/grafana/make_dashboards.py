"""Generate the two Grafana dashboards from one panel list, so they never drift apart.

    python infra/observability/grafana/make_dashboards.py          # rewrite dashboards/*.json
    python infra/observability/grafana/make_dashboards.py --check  # exit 1 if they are stale

* ``kube-prometheus-stack-openai-dashboard.json``: Prometheus + Grafana in the cluster (the
  kube-prometheus-stack Helm chart) or the local compose stack; series come from scrapes, so
  there is a ``namespace`` filter.
* ``azure-managed-grafana-openai-dashboard.json``: Azure Managed Grafana over an Azure Monitor
  workspace; series come from the gateway's remote-write push (``job`` = ``RemoteWrite:Job``,
  ``instance`` = one value per process).

Both show per-tenant prompt / completion / total tokens per minute, chargeback (tokens and cost
per tenant per day), requests by status, latency, everything by instance, and the health of the
metrics push. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
Query = tuple[str, str]  # (PromQL, legend)
PanelSpec = tuple[str, str, str, list[Query]]  # (title, unit, panel type, queries)


@dataclass(frozen=True)
class Flavour:
    file: str
    uid: str
    title: str
    tags: tuple[str, ...]
    selector: str  # label matchers every query starts with
    variables: tuple[tuple[str, str, str], ...]  # (name, label, label_values query base)
    default_job: str


KUBE = Flavour(
    file="kube-prometheus-stack-openai-dashboard.json",
    uid="openai-gateway-kps",
    title="Azure OpenAI gateway: tokens per tenant (kube-prometheus-stack)",
    tags=("openai", "gateway", "kube-prometheus-stack"),
    selector='job=~"$job", namespace=~"$namespace", instance=~"$instance"',
    variables=(
        ("job", "job", "openai_total_tokens_total"),
        ("namespace", "namespace", 'openai_total_tokens_total{job=~"$job"}'),
        ("instance", "instance", 'openai_total_tokens_total{job=~"$job", namespace=~"$namespace"}'),
    ),
    default_job="$__all",
)
AZURE = Flavour(
    file="azure-managed-grafana-openai-dashboard.json",
    uid="openai-gateway-amg",
    title="Azure OpenAI gateway: tokens per tenant (Azure Managed Grafana)",
    tags=("openai", "gateway", "azure-monitor"),
    selector='job=~"$job", instance=~"$instance"',
    variables=(
        ("job", "job", "openai_total_tokens_total"),
        ("instance", "instance", 'openai_total_tokens_total{job=~"$job"}'),
    ),
    default_job="openai-gateway",
)


def _tokens(kind: str, sel: str, by: str) -> str:
    return (f'sum by ({by}) (rate(openai_{kind}_tokens_total{{{sel}, tenant_name=~"$tenant", '
            f'openai_name=~"$openai"}}[$__rate_interval])) * 60')


def _panels(sel: str) -> list[dict[str, Any]]:
    """Rows of panels; every query starts with the flavour's label matchers ``sel``."""
    tenant_sel = f'{sel}, tenant_name=~"$tenant", openai_name=~"$openai"'
    rows: list[tuple[str, list[PanelSpec]]] = [
        ("Tokens per tenant", [
            ("Prompt tokens per minute by tenant", "short", "timeseries",
             [(_tokens("prompt", sel, "tenant_name"), "{{tenant_name}}")]),
            ("Completion tokens per minute by tenant", "short", "timeseries",
             [(_tokens("completion", sel, "tenant_name"), "{{tenant_name}}")]),
            ("Total tokens per minute by tenant", "short", "timeseries",
             [(_tokens("total", sel, "tenant_name"), "{{tenant_name}}")]),
            ("Tokens in the selected range by tenant (chargeback)", "short", "table",
             [(f"sum by (tenant_name) (increase(openai_{kind}_tokens_total{{{tenant_sel}}}[$__range]))",
               kind) for kind in ("prompt", "completion", "total")]),
            ("Total tokens per request by tenant (p95)", "short", "timeseries",
             [(f"histogram_quantile(0.95, sum by (le, tenant_name) "
               f"(rate(openai_total_tokens_bucket{{{tenant_sel}}}[$__rate_interval])))", "{{tenant_name}}")]),
            ("Total tokens per minute by Azure OpenAI instance", "short", "timeseries",
             [(_tokens("total", sel, "openai_name"), "{{openai_name}}")]),
        ]),
        ("Chargeback (per UTC day)", [
            ("Tokens per tenant per day", "short", "daily",
             [(f"sum by (tenant_name) (increase(openai_total_tokens_total{{{tenant_sel}}}[1d]))",
               "{{tenant_name}}")]),
            ("Cost per tenant per day (Pricing table)", "currencyUSD", "daily",
             [(f"sum by (tenant_name) (increase(gateway_token_cost_total{{{tenant_sel}}}[1d]))",
               "{{tenant_name}}")]),
            ("Token quota used per tenant (day, month)", "percentunit", "timeseries",
             [(f'max by (tenant_name, period) (gateway_quota_used_ratio{{{sel}, tenant_name=~"$tenant"}})',
               "{{tenant_name}} {{period}}")]),
        ]),
        ("Requests", [
            ("Requests per second by status", "reqps", "timeseries",
             [(f"sum by (status) (rate(gateway_requests_total{{{sel}}}[$__rate_interval]))", "{{status}}")]),
            ("Requests per second by route", "reqps", "timeseries",
             [(f"sum by (route) (rate(gateway_requests_total{{{sel}}}[$__rate_interval]))", "{{route}}")]),
            ("Latency by route (p50, p95, p99)", "s", "timeseries",
             [(f"histogram_quantile({q}, sum by (le, route) "
               f"(rate(gateway_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
               f"{{{{route}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]),
        ]),
        ("By gateway instance", [
            ("Total tokens per minute by gateway instance", "short", "timeseries",
             [(_tokens("total", sel, "instance"), "{{instance}}")]),
            ("Requests per second by gateway instance", "reqps", "timeseries",
             [(f"sum by (instance) (rate(gateway_requests_total{{{sel}}}[$__rate_interval]))",
               "{{instance}}")]),
            ("Metrics push: accepted and failed pushes per minute", "short", "timeseries",
             [(f"sum by (instance) (rate(gateway_remote_write_pushes_total{{{sel}}}[$__rate_interval])) * 60",
               "{{instance}} accepted"),
              (f"sum by (instance, reason) "
               f"(rate(gateway_remote_write_failures_total{{{sel}}}[$__rate_interval])) * 60",
               "{{instance}} failed: {{reason}}")]),
        ]),
    ]
    return _layout(rows)


def _layout(rows: list[tuple[str, list[PanelSpec]]]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row_title, items in rows:
        panels.append({"type": "row", "title": row_title, "collapsed": False, "id": len(panels) + 1,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        for index, (title, unit, kind, queries) in enumerate(items):
            x = 0 if index % 2 == 0 else 12
            grid = {"h": 8, "w": 12, "x": x, "y": y}
            panels.append(_panel(len(panels) + 1, title, unit, kind, queries, grid))
            if x == 12 or index == len(items) - 1:
                y += 8
    return panels


def _panel(pid: int, title: str, unit: str, kind: str, queries: list[Query],
           grid: dict[str, int]) -> dict[str, Any]:
    table = kind == "table"
    daily = kind == "daily"  # one bar per day: the query's step is a whole day
    kind = "timeseries" if daily else kind
    targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                "range": not table, "instant": table, **({"format": "table"} if table else {}),
                **({"interval": "1d"} if daily else {})}
               for i, (expr, legend) in enumerate(queries)]
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": title, "datasource": DATASOURCE, "gridPos": grid,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, **({"custom": {"drawStyle": "bars", "fillOpacity": 80,
                                                                    "stacking": {"mode": "normal"}}}
                                                       if daily else {})}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if table:
        panel["transformations"] = [{"id": "merge", "options": {}}]
        panel["options"] = {"showHeader": True, "sortBy": [{"displayName": "Value #C", "desc": True}]}
    return panel


def _variable(name: str, label: str, base: str, default: str = "$__all") -> dict[str, Any]:
    query = f"label_values({base}, {label})"
    current = {"selected": True, "text": "All" if default == "$__all" else default, "value": default}
    return {
        "name": name, "label": name.capitalize(), "type": "query", "datasource": DATASOURCE,
        "definition": query, "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*", "current": current,
    }


def dashboard(flavour: Flavour) -> dict[str, Any]:
    datasource = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
                  "current": {}, "hide": 0, "refresh": 1, "regex": ""}
    variables = [datasource]
    for name, label, base in flavour.variables:
        variables.append(_variable(name, label, base, flavour.default_job if name == "job" else "$__all"))
    variables.append(_variable("tenant", "tenant_name", f"openai_total_tokens_total{{{flavour.selector}}}"))
    variables.append(_variable("openai", "openai_name", f"openai_total_tokens_total{{{flavour.selector}}}"))
    return {
        "uid": flavour.uid, "title": flavour.title, "tags": list(flavour.tags), "editable": True,
        "schemaVersion": 39, "version": 1, "timezone": "", "refresh": "30s", "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "description": "Per-tenant Azure OpenAI token consumption, requests and latency of the gateway.",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": _panels(flavour.selector),
    }


def render(flavour: Flavour) -> str:
    return json.dumps(dashboard(flavour), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = parser.parse_args(argv)
    stale = []
    for flavour in (KUBE, AZURE):
        path = OUT / flavour.file
        text = render(flavour)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
            continue
        OUT.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent.parent.parent)}")
    if stale:
        print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
