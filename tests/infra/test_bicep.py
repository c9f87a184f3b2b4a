"""Wiring of infra/bicep, checked offline by parsing every .bicep file with pycep-parser.

The Bicep CLI cannot run here, so these tests read the templates the way a reviewer would: every
module gets the parameters it requires, the Function App gets every setting the code reads
(infra/bicep/app-settings.json), the workload identity holds every role it needs at the narrowest
scope, and the example .bicepparam only sets parameters main.bicep declares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN = BICEP_DIR / "main.bicep"

# Built-in role definition ids (Azure built-in roles reference) and the resource type each one
# must be scoped to: the narrowest resource that grants what the workload needs.
WORKLOAD_ROLES: dict[str, tuple[str, str]] = {
    "Cognitive Services OpenAI User": ("5e0bd9bd-7b93-4f28-af87-19fc36ad61bd", "Microsoft.CognitiveServices/accounts"),
    "Storage Table Data Contributor": ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "Microsoft.Storage/storageAccounts"),
    "Storage Blob Data Owner": ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "Microsoft.Storage/storageAccounts"),
    "Storage Queue Data Contributor": ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", "Microsoft.Storage/storageAccounts"),
    "Key Vault Secrets User": ("4633458b-17de-408a-b874-0445c86b69e6", "Microsoft.KeyVault/vaults"),
    "Monitoring Metrics Publisher": ("3913510d-42f4-4e42-8a64-420c390055eb", "Microsoft.Insights/dataCollectionRules"),
    "AcrPull": ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "Microsoft.ContainerRegistry/registries"),
}
GRAFANA_ADMIN = "22926164-76b3-42b3-bc55-97df8dab3e41"
WORKLOAD_PRINCIPAL = "identity.outputs.principalId"


# ---------------------------------------------------------------- helpers over pycep's JSON


def dotted(expr: Any) -> str | None:
    """``a.b.c`` for a property-accessor chain or a bare name; None for anything else."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        ops = expr["operator"]["operands"]
        left, right = dotted(ops["operand_1"]), dotted(ops["operand_2"])
        return f"{left}.{right}" if left and right else None
    return None


def body(declaration: dict[str, Any]) -> dict[str, Any]:
    """The object of a resource/module, looking through `for` loops and `if` conditions."""
    config = declaration["config"]
    while isinstance(config, dict) and "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def is_looped(declaration: dict[str, Any]) -> bool:
    return isinstance(declaration["config"], dict) and "loop_type" in declaration["config"]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def resolve(expr: Any, variables: dict[str, Any]) -> Any:
    """Resolve a variable name or ``var.key`` accessor to its literal value."""
    name = dotted(expr)
    if name is None:
        return expr
    head, _, rest = name.partition(".")
    if head not in variables:
        return expr
    value = variables[head]["value"]
    for key in filter(None, rest.split(".")):
        value = value[key]
    return value


def setting_pattern(name: str) -> re.Pattern[str]:
    """``AzureOpenAI__Services__<Name>__Endpoint`` -> matches ``...__${s.name}__Endpoint``."""
    parts = re.split(r"<[^>]+>", name)
    return re.compile(r"\$\{[^}]+\}".join(re.escape(p) for p in parts) + r"\Z")


@pytest.fixture(scope="module")
def parsed() -> dict[Path, dict[str, Any]]:
    parser = BicepParser()
    files = sorted(BICEP_DIR.rglob("*.bicep"))
    assert MAIN in files
    return {path: parser.parse(file_path=path) for path in files}


@pytest.fixture(scope="module")
def main(parsed: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    return parsed[MAIN]


def module_template(parsed: dict[Path, dict[str, Any]], module: dict[str, Any]) -> dict[str, Any]:
    return parsed[(MAIN.parent / module["detail"]["path"]).resolve()]


def settings_objects(main: dict[str, Any]) -> list[dict[str, Any]]:
    """The {name, value} objects that reach the Function App's appSettings parameter."""
    variables = main["variables"]
    root = body(main["modules"]["functionApp"])["params"]["appSettings"]
    seen: set[str] = set()
    pending = [root]
    while pending:  # follow variable references (concat, flatten, ...) from the parameter
        node = pending.pop()
        for item in walk(node):
            if isinstance(item, str) and item in variables and item not in seen:
                seen.add(item)
                pending.append(variables[item]["value"])
    objects = []
    for name in seen:
        for item in walk(variables[name]["value"]):
            if isinstance(item, dict) and set(item) == {"name", "value"} and isinstance(item["name"], str):
                objects.append(item)
    return objects


# ---------------------------------------------------------------- tests


def test_every_bicep_file_parses_and_main_targets_a_resource_group(parsed: dict[Path, Any]) -> None:
    assert len(parsed) >= 9, sorted(p.name for p in parsed)
    assert parsed[MAIN]["globals"]["scope"]["value"] == "resourceGroup"


def test_every_module_gets_its_required_parameters_and_no_unknown_ones(
    parsed: dict[Path, dict[str, Any]], main: dict[str, Any]
) -> None:
    for symbol, module in main["modules"].items():
        template = module_template(parsed, module)
        declared = template["parameters"]
        required = {name for name, p in declared.items() if p["default"] is None}
        given = set(body(module)["params"])
        assert required <= given, f"module {symbol} misses {sorted(required - given)}"
        assert given <= set(declared), f"module {symbol} passes unknown {sorted(given - set(declared))}"


def test_function_app_sets_every_setting_the_code_reads(main: dict[str, Any]) -> None:
    spec = json.loads((BICEP_DIR / "app-settings.json").read_text())
    objects = settings_objects(main)
    names = [o["name"] for o in objects]
    assert len(names) == len(set(names)), "a setting is set twice"
    for wanted in spec["required"]:
        assert any(setting_pattern(wanted).match(n) for n in names), f"{wanted} is not set"
    for forbidden in spec["forbidden"]:
        hits = [n for n in names if setting_pattern(forbidden).match(n)]
        assert not hits, f"{hits} must not be set on a Flex Consumption, identity-based app"
    for wanted, value in spec["fixed_values"].items():
        actual = [o["value"] for o in objects if setting_pattern(wanted).match(o["name"])]
        assert actual == [value], f"{wanted} = {actual}, expected {value!r}"


def test_app_settings_reach_the_site_and_identity_values_come_from_the_identity(
    parsed: dict[Path, dict[str, Any]], main: dict[str, Any]
) -> None:
    template = module_template(parsed, main["modules"]["functionApp"])
    site = body(template["resources"]["site"])
    assert site["properties"]["siteConfig"]["appSettings"] == "appSettings"
    values = {o["name"]: dotted(o["value"]) for o in settings_objects(main)}
    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId", "RemoteWrite__ManagedIdentityClientId"):
        assert values[name] == "identity.outputs.clientId", name
    assert values["RemoteWrite__Url"] == "monitoring.outputs.metricsIngestionUrl"
    assert values["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "monitoring.outputs.appInsightsConnectionString"


def role_assignments(parsed: dict[Path, dict[str, Any]], main: dict[str, Any]) -> list[dict[str, Any]]:
    """Every role assignment made by a module, with the main.bicep value of its principal."""
    found = []
    for symbol, module in main["modules"].items():
        template = module_template(parsed, module)
        for resource in template["resources"].values():
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            props = body(resource)["properties"]
            role_fn = props["roleDefinitionId"]["function"]["parameters"]
            principal = props["principalId"]
            given = body(module)["params"].get(principal) if isinstance(principal, str) else None
            scope = template["resources"].get(body(resource).get("scope"), {})
            found.append(
                {
                    "module": symbol,
                    "looped": is_looped(module),
                    "role": resolve(role_fn["resource_name_1"], template.get("variables", {})),
                    "principal": dotted(given) if given is not None else dotted(principal),
                    "scope_type": scope.get("type"),
                }
            )
    return found


@pytest.mark.parametrize("role", sorted(WORKLOAD_ROLES))
def test_workload_identity_holds_each_role_at_the_narrowest_scope(
    parsed: dict[Path, dict[str, Any]], main: dict[str, Any], role: str
) -> None:
    guid, scope_type = WORKLOAD_ROLES[role]
    grants = [a for a in role_assignments(parsed, main) if a["role"] == guid]
    workload = [a for a in grants if a["principal"] == WORKLOAD_PRINCIPAL]
    assert workload, f"{role} is not assigned to the workload identity: {grants}"
    assert all(a["scope_type"] == scope_type for a in workload), workload


def test_openai_user_is_granted_on_each_account_of_the_list(main: dict[str, Any]) -> None:
    module = main["modules"]["openAi"]
    assert module["config"]["loop_type"]["detail"]["array_name"] == "openAiServices"
    assert dotted(body(module)["params"]["workloadPrincipalId"]) == WORKLOAD_PRINCIPAL
    assert main["parameters"]["openAiDisableLocalAuth"]["default"] is True


def test_grafana_admin_goes_to_the_admin_principal_and_grafana_reads_the_workspace(
    parsed: dict[Path, dict[str, Any]], main: dict[str, Any]
) -> None:
    admins = [a for a in role_assignments(parsed, main) if a["role"] == GRAFANA_ADMIN]
    assert [a["principal"] for a in admins] == ["adminPrincipalId"]
    grafana = module_template(parsed, main["modules"]["grafana"])
    integration = body(grafana["resources"]["grafana"])["properties"]["grafanaIntegrations"]
    workspaces = integration["azureMonitorWorkspaceIntegrations"]
    assert [w["azureMonitorWorkspaceResourceId"] for w in workspaces] == ["monitorWorkspaceId"]
    assert dotted(body(main["modules"]["grafana"])["params"]["monitorWorkspaceId"]) == (
        "monitoring.outputs.monitorWorkspaceId"
    )
