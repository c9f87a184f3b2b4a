"""The Bicep deployment as an operator meets it: the example parameters, the outputs
infra/deploy.sh reads, and deploy.sh itself run against stand-in `az`/`kubectl`/`kubelogin`.

Azure is unreachable here, so deploy.sh runs with small fake CLIs first on PATH (the only mock:
they record their arguments and answer `az deployment group show` with outputs built from
main.bicep's own output list). envsubst, git and python3 are the real ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
DEPLOY = ROOT / "infra" / "deploy.sh"

# What the issue asks main.bicep to output for the apps and scripts.
REQUIRED_OUTPUTS = {
    "functionAppName",
    "functionAppUrl",
    "metricsIngestionUrl",
    "acrLoginServer",
    "aksName",
    "identityClientId",
    "keyVaultUri",
}


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return BicepParser().parse(file_path=BICEP_DIR / "main.bicep")


def module(name: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=BICEP_DIR / "modules" / f"{name}.bicep")


def props(template: dict[str, Any], symbol: str) -> dict[str, Any]:
    config = template["resources"][symbol]["config"]
    return config["properties"]


def test_bicepparam_sets_only_declared_parameters_and_every_required_one(main: dict[str, Any]) -> None:
    text = (BICEP_DIR / "main.bicepparam").read_text()
    assert re.search(r"^using 'main\.bicep'$", text, re.M)
    given = re.findall(r"^param\s+(\w+)\s*=", text, re.M)
    declared = main["parameters"]
    assert set(given) <= set(declared), sorted(set(given) - set(declared))
    required = {name for name, p in declared.items() if p["default"] is None}
    assert required <= set(given), sorted(required - set(given))


def test_bicepparam_tenants_map_to_declared_instances() -> None:
    """The gateway refuses to start when a tenant maps to an unknown instance."""
    text = (BICEP_DIR / "main.bicepparam").read_text()
    services_block = text.split("param openAiServices", 1)[1].split("\n]\n", 1)[0]
    services = re.findall(r"^\s{4}name: '(\w+)'", services_block, re.M)
    assert len(services) >= 2
    mapping_block = text.split("param tenantMappings", 1)[1].split("\n}\n", 1)[0]
    targets = re.findall(r"^\s+\w+: '(\w+)'", mapping_block, re.M)
    assert targets and set(targets) <= set(services)


def deploy_script_outputs() -> set[str]:
    return set(re.findall(r"deploy_output (\w+)", DEPLOY.read_text())) - {"NAME"}


def test_outputs_used_by_the_deploy_script_exist(main: dict[str, Any]) -> None:
    outputs = set(main["outputs"])
    assert REQUIRED_OUTPUTS <= outputs, sorted(REQUIRED_OUTPUTS - outputs)
    used = deploy_script_outputs()
    assert used, "deploy.sh reads no output"
    assert used <= outputs, sorted(used - outputs)


def test_remote_write_url_targets_the_dcr_prometheus_stream() -> None:
    url = module("monitoring")["variables"]["metricsIngestionUrl"]["value"]
    assert url == (
        "${dataCollectionEndpoint.properties.metricsIngestion.endpoint}/dataCollectionRules/"
        "${dataCollectionRule.properties.immutableId}/streams/Microsoft-PrometheusMetrics/api/v1/write"
        "?api-version=2023-04-24"
    )


def test_federated_credential_matches_the_grpc_service_account(main: dict[str, Any]) -> None:
    aks = module("aks")
    assert main["parameters"]["grpcNamespace"]["default"] == "openai-gateway"
    assert main["parameters"]["grpcServiceAccountName"]["default"] == "openai-gateway-grpc"
    assert aks["parameters"]["serviceAccountNamespace"]["default"] == "openai-gateway"
    assert aks["parameters"]["serviceAccountName"]["default"] == "openai-gateway-grpc"
    cred = props(aks, "federatedCredential")
    assert cred["subject"] == "system:serviceaccount:${serviceAccountNamespace}:${serviceAccountName}"
    assert cred["audiences"] == ["api://AzureADTokenExchange"]
    cluster = props(aks, "aks")
    assert cluster["oidcIssuerProfile"]["enabled"] is True
    assert cluster["securityProfile"]["workloadIdentity"]["enabled"] is True
    assert cluster["azureMonitorProfile"]["metrics"]["enabled"] is True


def test_stores_refuse_keys_and_old_tls() -> None:
    storage = props(module("storage"), "storage")
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    vault = props(module("keyvault"), "vault")
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True and vault["enablePurgeProtection"] is True


def test_function_app_is_flex_consumption_python_313_with_identity_deployment() -> None:
    template = module("functionapp")
    assert template["resources"]["plan"]["config"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    config = props(template, "site")["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    assert config["runtime"]["version"] == "pythonVersion"  # the parameter, not a literal
    assert template["parameters"]["pythonVersion"]["default"] == "3.13"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"


# ---------------------------------------------------------------- deploy.sh, for real

FAKE_AZ = r"""import json, os, shutil, sys
log = os.environ["FAKE_LOG"]
args = sys.argv[1:]
with open(os.path.join(log, "calls.jsonl"), "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + args) + "\n")
if args[:2] == ["deployment", "group"] and args[2] == "show":
    print(open(os.path.join(log, "outputs.json")).read())
elif args[:2] == ["account", "show"] and "--query" in args:
    print("user")
elif args[:3] == ["ad", "signed-in-user", "show"]:
    print("00000000-0000-0000-0000-0000000000ad")
elif args[:2] == ["feature", "show"]:
    print("Registered")
elif "config-zip" in args:
    shutil.copy(args[args.index("--src") + 1], os.path.join(log, "package.zip"))
elif len(args) > 1 and args[0] == "apply":
    shutil.copy(args[args.index("--filename") + 1], os.path.join(log, "applied.yaml"))
"""

MANIFEST = """apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${GRPC_SERVICE_ACCOUNT}
  namespace: ${GRPC_NAMESPACE}
  annotations:
    azure.workload.identity/client-id: ${AZURE_CLIENT_ID}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: grpc-env
data:
  IMAGE: ${GRPC_IMAGE}
  KeyVaultName: ${KEY_VAULT_NAME}
  RemoteWrite__Url: ${REMOTE_WRITE_URL}
  UNTOUCHED: ${HOME}
"""


def fake_outputs(main: dict[str, Any]) -> dict[str, Any]:
    values = {name: {"type": "String", "value": f"fake-{name}"} for name in main["outputs"]}
    values["acrLoginServer"]["value"] = "fakeacr.azurecr.io"
    values["metricsIngestionUrl"]["value"] = "https://dce.example/dataCollectionRules/dcr-1/streams/x"
    values["grpcNamespace"]["value"] = "openai-gateway"
    values["grpcServiceAccountName"]["value"] = "openai-gateway-grpc"
    return values


@pytest.fixture
def fake_cli(tmp_path: Path, main: dict[str, Any]) -> dict[str, str]:
    bin_dir, log, k8s = tmp_path / "bin", tmp_path / "log", tmp_path / "k8s"
    for d in (bin_dir, log, k8s):
        d.mkdir()
    for tool in ("az", "kubectl", "kubelogin"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\n{FAKE_AZ}")
        (bin_dir / tool).chmod(0o755)
    (log / "outputs.json").write_text(json.dumps(fake_outputs(main)))
    (k8s / "grpc.yaml").write_text(MANIFEST)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "K8S_DIR": str(k8s),
        "IMAGE_TAG": "abc123",
        "RESOURCE_GROUP": "rg-test",
        "HOME": "/home/x",
    }


def run_deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY), *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def calls(env: dict[str, str]) -> list[list[str]]:
    lines = (Path(env["FAKE_LOG"]) / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_deploy_runs_every_step_with_values_from_the_outputs(fake_cli: dict[str, str]) -> None:
    result = run_deploy(fake_cli)
    assert result.returncode == 0, result.stderr
    made = calls(fake_cli)
    create = next(c for c in made if c[1:4] == ["deployment", "group", "create"])
    assert str(BICEP_DIR / "main.bicep") in create and str(BICEP_DIR / "main.bicepparam") in create
    assert ["az", "group", "create", "--name", "rg-test", "--location", "swedencentral", "--output", "none"] in made
    build = next(c for c in made if c[1:3] == ["acr", "build"])
    assert build[build.index("--registry") + 1] == "fake-acrName"
    assert build[build.index("--image") + 1] == "openai-gateway-grpc:abc123"
    zip_call = next(c for c in made if "config-zip" in c)
    assert zip_call[zip_call.index("--name") + 1] == "fake-functionAppName"
    with zipfile.ZipFile(Path(fake_cli["FAKE_LOG"]) / "package.zip") as package:
        names = package.namelist()
    assert "function_app.py" in names and "host.json" in names
    assert not any(n.startswith(("tests/", "infra/")) for n in names)
    applied = (Path(fake_cli["FAKE_LOG"]) / "applied.yaml").read_text()
    assert "name: openai-gateway-grpc" in applied and "namespace: openai-gateway" in applied
    assert "client-id: fake-identityClientId" in applied
    assert "IMAGE: fakeacr.azurecr.io/openai-gateway-grpc:abc123" in applied
    assert "KeyVaultName: fake-keyVaultName" in applied
    assert "RemoteWrite__Url: https://dce.example/dataCollectionRules/dcr-1/streams/x" in applied
    assert "UNTOUCHED: ${HOME}" in applied, "only the documented variables are substituted"
    assert "fake-functionAppUrl" in result.stdout


def test_deploy_skips_steps_on_request(fake_cli: dict[str, str]) -> None:
    result = run_deploy(fake_cli, "--skip-infra", "--skip-function", "--skip-k8s")
    assert result.returncode == 0, result.stderr
    verbs = [c[1:3] for c in calls(fake_cli) if c[0] == "az"]
    assert ["deployment", "group"] in verbs and ["acr", "build"] in verbs
    assert ["group", "create"] not in verbs
    assert not any(c[0] == "kubectl" for c in calls(fake_cli))


def test_deploy_names_the_missing_prerequisites(tmp_path: Path) -> None:
    result = subprocess.run(
        ["/bin/bash", str(DEPLOY)], env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "missing prerequisite(s): az kubectl kubelogin envsubst python3 git" in result.stderr


def test_deploy_rejects_an_unknown_option(fake_cli: dict[str, str]) -> None:
    result = run_deploy(fake_cli, "--frobnicate")
    assert result.returncode == 2 and "unknown option '--frobnicate'" in result.stderr


K8S_DIR = ROOT / "infra" / "k8s"


def test_real_manifests_get_every_placeholder_and_the_federated_service_account(
    fake_cli: dict[str, str],
) -> None:
    result = run_deploy({**fake_cli, "K8S_DIR": str(K8S_DIR)}, "--skip-infra", "--skip-function", "--skip-image")
    assert result.returncode == 0, result.stderr
    applied = (Path(fake_cli["FAKE_LOG"]) / "applied.yaml").read_text()
    assert not re.findall(r"\$\{\w+\}", applied), "a placeholder in infra/k8s is not filled by deploy.sh"
    assert 'image: "fakeacr.azurecr.io/openai-gateway-grpc:abc123"' in applied
    assert re.search(
        r"kind: ServiceAccount\s+metadata:\s+name: openai-gateway-grpc\s+namespace: openai-gateway", applied
    )
