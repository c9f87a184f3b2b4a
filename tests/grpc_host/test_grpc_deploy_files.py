"""The container and Kubernetes files: linted, schema-valid, and consistent with the host."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
DOCKERFILE = REPO / "grpc_host" / "Dockerfile"
BIN = Path(sys.executable).parent
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
# Filled by infra/deploy.sh; GRPC_HOSTNAME only by the separately applied ingress (docs/grpc.md).
DEPLOY_VARIABLES = {"GRPC_IMAGE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "KEY_VAULT_NAME", "REMOTE_WRITE_URL",
                    "AUTH_ISSUER", "AUTH_AUDIENCE"}


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: pip install -r requirements-dev.txt")
    return str(path)


def docs() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_manifests_pass_strict_schema_validation() -> None:
    assert MANIFESTS
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, MANIFESTS)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_placeholders_are_the_ones_the_deploy_script_fills() -> None:
    used = {name for path in MANIFESTS for name in PLACEHOLDER.findall(path.read_text(encoding="utf-8"))}
    ingress = {n for p in (K8S / "ingress").glob("*.yaml") for n in PLACEHOLDER.findall(p.read_text())}
    assert used - ingress <= DEPLOY_VARIABLES
    assert ingress == {"GRPC_HOSTNAME"}
    deploy = REPO / "infra" / "deploy.sh"
    match = re.search(r"K8S_VARIABLES='([^']*)'", deploy.read_text(encoding="utf-8"))
    assert match, "infra/deploy.sh no longer defines K8S_VARIABLES"
    filled = set(PLACEHOLDER.findall(match[1]))
    assert used - ingress <= filled, f"infra/deploy.sh does not fill {sorted(used - ingress - filled)}"


def test_deployment_matches_the_host_settings() -> None:
    found = docs()
    settings = found[("ConfigMap", "openai-gateway-grpc-settings")]["data"]
    deployment = found[("Deployment", "openai-gateway-grpc")]
    assert deployment["metadata"]["namespace"] == "openai-gateway"
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "openai-gateway-grpc"
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": int(settings["GrpcHost__Port"]),
        "metrics": int(settings["GrpcHost__MetricsPort"]),
    }
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"]
    drain = container["lifecycle"]["preStop"]["sleep"]["seconds"] + float(settings["GrpcHost__GraceSeconds"])
    assert spec["terminationGracePeriodSeconds"] > drain  # the kubelet must not SIGKILL a draining pod
    account = found[("ServiceAccount", "openai-gateway-grpc")]
    assert account["metadata"]["namespace"] == "openai-gateway"
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    ingress = found[("Ingress", "openai-gateway-grpc")]["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert "cert-manager.io/cluster-issuer" in ingress


def test_scrape_config_keeps_only_annotated_gateway_pods() -> None:
    """Debian's promtool lacks Kubernetes discovery, so check the relabelling here."""
    config = docs()[("ConfigMap", "ama-metrics-prometheus-config")]
    assert config["metadata"]["namespace"] == "kube-system"
    scrape = yaml.safe_load(config["data"]["prometheus-config"])["scrape_configs"][0]
    assert scrape["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["openai-gateway"]}}]
    rules = scrape["relabel_configs"]
    for rule in rules:
        assert rule.get("action", "replace") in {"keep", "drop", "replace"}
        re.compile(rule.get("regex", "(.*)"))
    keep = rules[0]
    assert keep["action"] == "keep" and keep["regex"] == "true"
    address = next(r for r in rules if r.get("target_label") == "__address__")
    joined = ";".join(["10.0.0.7:8002", "9102"])
    rewritten = re.sub(f"^(?:{address['regex']})$", address["replacement"].replace("$", "\\"), joined)
    assert rewritten == "10.0.0.7:9102"


def _image_tree(target: Path) -> None:
    """Copy what the Dockerfile's final stage COPYs from the build context (globs as written)."""
    final = DOCKERFILE.read_text(encoding="utf-8").rsplit("\nFROM ", 1)[1]
    for line in final.splitlines():
        parts = line.split()
        if not parts or parts[0] != "COPY" or any(p.startswith("--from") for p in parts):
            continue
        *sources, dest = parts[1:]
        for source in sources:
            for path in REPO.glob(source.rstrip("/")):
                out = target / dest / (path.name if not source.endswith("/") else "")
                if path.is_dir():
                    shutil.copytree(path, out, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, out)


def test_the_image_contains_everything_the_host_imports(tmp_path: Path) -> None:
    """Only the files the image copies: the host must start its CLI without the rest of the repo."""
    _image_tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; sys.argv=['grpc_host', '--help']; "
         "runpy.run_module('grpc_host', run_name='__main__')"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--metrics-port" in result.stdout
    assert not (tmp_path / "simulator").exists() and not (tmp_path / "tests").exists()
