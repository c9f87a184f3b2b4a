"""The gateway settings the gRPC host reads from Key Vault, checked against the settings model.

The gRPC pods on AKS get their Azure OpenAI instances and tenant mappings only from Key Vault
(``KeyVaultName`` in infra/k8s). These tests expand main.bicep's secret list for the example
main.bicepparam and feed the secret names, with dummy values, through the gateway's own loader
(``from_flat_keys(..., "--")`` + ``validate_settings``): every instance and tenant must arrive,
and no secret may be silently ignored for an unknown key. Azure is unreachable, so no vault is
involved; the names and the loader are the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser
from pydantic import BaseModel

from core.config import Settings, from_flat_keys, validate_settings

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
# Key Vault secret names: 1-127 letters, digits and dashes.
SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}\Z")
PLACEHOLDER = re.compile(r"\$\{(\w+)\.(\w+)\}")


def bicepparam_lists() -> tuple[list[str], dict[str, str]]:
    """Instance names and tenant mappings of the example main.bicepparam."""
    text = (BICEP_DIR / "main.bicepparam").read_text(encoding="utf-8")
    services_block = text.split("param openAiServices", 1)[1].split("\n]\n", 1)[0]
    services = re.findall(r"^\s{4}name: '([^']+)'", services_block, re.M)
    mapping_block = text.split("param tenantMappings", 1)[1].split("\n}\n", 1)[0]
    tenants = dict(re.findall(r"^\s+'?([\w-]+)'?: '([^']+)'", mapping_block, re.M))
    assert len(services) >= 2 and tenants
    return services, tenants


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return BicepParser().parse(file_path=BICEP_DIR / "main.bicep")


def referenced_variables(node: Any, variables: dict[str, Any]) -> Iterator[str]:
    """Every variable reachable from ``node`` through other variables (concat, flatten, ...)."""
    seen: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        stack = [current]
        while stack:
            item = stack.pop()
            if isinstance(item, str) and item in variables and item not in seen:
                seen.add(item)
                pending.append(variables[item]["value"])
                yield item
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)


def setting_names(main: dict[str, Any], root: str) -> set[str]:
    """The `__` setting names reached from variable ``root``, expanded for main.bicepparam."""
    services, tenants = bicepparam_lists()
    loops = {"openAiServices": services, "items(tenantMappings)": list(tenants)}
    variables = main["variables"]
    names: set[str] = set()
    for name in referenced_variables(root, variables):
        value = variables[name]["value"]
        entries = value.get("config") if isinstance(value, dict) and "loop_type" in value else value
        entries = entries if isinstance(entries, list) else [entries]
        templates = [e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
        if not templates:
            continue
        if "loop_type" not in value:
            names.update(templates)
            continue
        array = value["loop_type"]["detail"]["array_name"]
        label = (
            array
            if isinstance(array, str)
            else f"{array['function']['type']}({array['function']['parameters']['arg_1']})"
        )
        assert label in loops, f"{name} loops over {label}; teach this test its values"
        names.update(PLACEHOLDER.sub(item, t) for t in templates for item in loops[label])
    return names


def dummy_value(path: list[str], tenants: dict[str, str]) -> str:
    """A value the model accepts for the key (mappings must name a configured instance)."""
    leaf = path[-1].lower()
    if path[0].lower() == "tenantazureopenaimappings":
        return tenants[path[-1]]
    return {
        "mode": "jwt",
        "issuer": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0",
        "endpoint": f"https://{path[-2].lower()}.openai.azure.com/",
        "type": "azuread",
        "maxresponsetokens": "123",
        "maxretries": "4",
    }.get(leaf, f"dummy-{'-'.join(path)}")


def read_back(model: Any, path: list[str]) -> Any:
    """Follow a configuration key through the validated model; KeyError if it was ignored."""
    node = model
    for part in path:
        if isinstance(node, BaseModel):
            fields = {name.replace("_", ""): name for name in type(node).model_fields}
            assert part.lower() in fields, f"{'--'.join(path)}: the settings model has no key {part!r}"
            node = getattr(node, fields[part.lower()])
        else:
            found = [v for k, v in node.items() if k.lower() == part.lower()]
            assert found, f"{'--'.join(path)}: {part!r} did not reach the settings"
            node = found[0]
    return node


def test_key_vault_secrets_come_from_the_function_app_settings_list(main: dict[str, Any]) -> None:
    """One source of truth: the secrets loop over the very list the Function App gets."""
    module = main["modules"]["keyVault"]["config"]["params"]
    secrets = main["variables"][module["settings"]]["value"]
    source = secrets["loop_type"]["detail"]["array_name"]
    rename = secrets["config"]["name"]["function"]
    assert rename["type"] == "replace"
    assert (rename["parameters"]["old_string"], rename["parameters"]["new_string"]) == ("__", "--")
    app_settings = main["modules"]["functionApp"]["config"]["params"]["appSettings"]
    assert source in set(referenced_variables(app_settings, main["variables"]))


def test_secrets_cover_every_instance_and_tenant_and_the_gateway_accepts_them(main: dict[str, Any]) -> None:
    services, tenants = bicepparam_lists()
    source = main["variables"][main["modules"]["keyVault"]["config"]["params"]["settings"]]["value"]
    secret_names = sorted(
        n.replace("__", "--") for n in setting_names(main, source["loop_type"]["detail"]["array_name"])
    )
    bad = [n for n in secret_names if not SECRET_NAME.match(n)]
    assert not bad, f"not valid Key Vault secret names: {bad}"

    expected = {"AzureOpenAI--SystemPrompt"} | {f"TenantAzureOpenAIMappings--{t}" for t in tenants}
    for service in services:
        for leaf in ("Endpoint", "Type", "Version", "Deployment", "Model", "MaxResponseTokens", "MaxRetries"):
            expected.add(f"AzureOpenAI--Services--{service}--{leaf}")
    assert expected <= set(secret_names), sorted(expected - set(secret_names))

    items = [(name, dummy_value(name.split("--"), tenants)) for name in secret_names]
    settings: Settings = validate_settings(from_flat_keys(items, "--"))
    assert sorted(settings.azure_openai.services) == sorted(services)
    assert all(s.type == "azuread" for s in settings.azure_openai.services.values())
    assert settings.tenant_azure_openai_mappings == {t.lower(): s for t, s in tenants.items()}
    assert settings.auth.mode == "jwt" and settings.auth.jwt.issuer.startswith("https://login.microsoftonline.com/")
    for name, value in items:  # each secret lands on a field: none is dropped as unknown
        assert str(read_back(settings, name.split("--"))) == value, name


def test_grpc_config_map_points_the_pods_at_the_vault_and_does_not_shadow_it() -> None:
    """Environment variables win over Key Vault, so the ConfigMap must not set these keys."""
    path = ROOT / "infra" / "k8s" / "20-configmap.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))["data"]
    assert data["KeyVaultName"] == "${KEY_VAULT_NAME}"
    assert data["AZURE_CLIENT_ID"] == "${AZURE_CLIENT_ID}"
    shadowing = [k for k in data if k.lower().startswith(("azureopenai__", "tenantazureopenaimappings__"))]
    assert not shadowing, shadowing
