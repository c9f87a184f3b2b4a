#!/usr/bin/env bash
# Deploy the multitenant Azure OpenAI gateway end to end:
#   1. Bicep (infra/bicep/main.bicep) into one resource group,
#   2. the Function App package (remote build on Flex Consumption),
#   3. the gRPC host image (built in ACR with `az acr build`, no local Docker),
#   4. the Kubernetes manifests in infra/k8s/ with values from the deployment outputs.
# Every step is idempotent: re-running converges to the same state.
#
# Usage: RESOURCE_GROUP=rg-openai-gateway LOCATION=swedencentral infra/deploy.sh [--skip-infra]
#        [--skip-function] [--skip-image] [--skip-k8s]
# See docs/deploy.md for prerequisites, the variables filled into infra/k8s and costs.
set -euo pipefail

die() { echo "deploy.sh: error: $*" >&2; exit 2; }
log() { echo "==> $*" >&2; }

check_prerequisites() {
  local missing=() tool
  for tool in az kubectl kubelogin envsubst python3 git; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    die "missing prerequisite(s): ${missing[*]}
  az        Azure CLI >= 2.61: https://learn.microsoft.com/cli/azure/install-azure-cli
  kubectl   and kubelogin: az aks install-cli
  envsubst  gettext package (apt-get install gettext-base / brew install gettext)
  python3, git"
  fi
  az account show --output none 2>/dev/null || die "the Azure CLI is not signed in: run 'az login' (and 'az account set -s <subscription>')"
}

parse_args() {
  SKIP_INFRA=0 SKIP_FUNCTION=0 SKIP_IMAGE=0 SKIP_K8S=0
  local arg
  for arg in "$@"; do
    case "$arg" in
      --skip-infra) SKIP_INFRA=1 ;;
      --skip-function) SKIP_FUNCTION=1 ;;
      --skip-image) SKIP_IMAGE=1 ;;
      --skip-k8s) SKIP_K8S=1 ;;
      -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
      *) die "unknown option '$arg' (see --help)" ;;
    esac
  done
}

# The signed-in operator gets Grafana Admin, AKS RBAC Cluster Admin and Key Vault Secrets Officer.
resolve_admin_principal() {
  if [[ -n "${ADMIN_PRINCIPAL_ID:-}" ]]; then
    export ADMIN_PRINCIPAL_TYPE="${ADMIN_PRINCIPAL_TYPE:-User}"
    return
  fi
  if [[ "$(az account show --query user.type --output tsv)" == "servicePrincipal" ]]; then
    ADMIN_PRINCIPAL_ID="$(az ad sp show --id "$(az account show --query user.name --output tsv)" --query id --output tsv)"
    ADMIN_PRINCIPAL_TYPE=ServicePrincipal
  else
    ADMIN_PRINCIPAL_ID="$(az ad signed-in-user show --query id --output tsv)"
    ADMIN_PRINCIPAL_TYPE=User
  fi
  export ADMIN_PRINCIPAL_ID ADMIN_PRINCIPAL_TYPE
}

register_providers() {
  local ns state
  for ns in Microsoft.App Microsoft.CognitiveServices Microsoft.ContainerRegistry Microsoft.ContainerService \
            Microsoft.Dashboard Microsoft.Insights Microsoft.KeyVault Microsoft.ManagedIdentity Microsoft.Monitor \
            Microsoft.OperationalInsights Microsoft.Storage Microsoft.Web Microsoft.AlertsManagement; do
    az provider register --namespace "$ns" --output none
  done
  # AKS nodes use encryption at host (temp disks and caches encrypted): a subscription feature.
  state="$(az feature show --namespace Microsoft.Compute --name EncryptionAtHost --query properties.state --output tsv)"
  if [[ "$state" != "Registered" ]]; then
    log "registering Microsoft.Compute/EncryptionAtHost (one-off, a few minutes)"
    az feature register --namespace Microsoft.Compute --name EncryptionAtHost --output none
    local i
    for i in $(seq 1 60); do
      state="$(az feature show --namespace Microsoft.Compute --name EncryptionAtHost --query properties.state --output tsv)"
      [[ "$state" == "Registered" ]] && break
      sleep 15
    done
    [[ "$state" == "Registered" ]] || die "feature Microsoft.Compute/EncryptionAtHost is '$state' after 15 minutes; retry later"
    az provider register --namespace Microsoft.Compute --output none
  fi
}

deploy_infra() {
  log "resource group $RESOURCE_GROUP in $LOCATION"
  az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none
  log "Bicep deployment $DEPLOYMENT_NAME (10-20 minutes the first time)"
  az deployment group create --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT_NAME" \
    --template-file "$BICEP_DIR/main.bicep" --parameters "$PARAMS_FILE" --output none
}

load_outputs() {
  OUTPUTS_FILE="$WORK_DIR/outputs.json"
  az deployment group show --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT_NAME" \
    --query properties.outputs --output json >"$OUTPUTS_FILE" \
    || die "no deployment '$DEPLOYMENT_NAME' in '$RESOURCE_GROUP': run without --skip-infra first"
}

# deploy_output NAME: one output value of the Bicep deployment (names are checked by tests/infra).
deploy_output() {
  python3 - "$OUTPUTS_FILE" "$1" <<'PY'
import json, sys
outputs = json.load(open(sys.argv[1]))
name = sys.argv[2]
if name not in outputs:
    sys.exit(f"deploy.sh: error: deployment output '{name}' is missing")
print(outputs[name]["value"])
PY
}

publish_function_app() {
  local app zip
  app="$(deploy_output functionAppName)"
  zip="$WORK_DIR/functionapp.zip"
  log "packaging the Function App ($FUNCTIONS_PACKAGE_PATHS)"
  # shellcheck disable=SC2086  # the path list is meant to split
  git -C "$REPO_ROOT" ls-files -- $FUNCTIONS_PACKAGE_PATHS | python3 -c '
import sys, zipfile
root, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
    for path in filter(None, sys.stdin.read().splitlines()):
        z.write(f"{root}/{path}", path)
' "$REPO_ROOT" "$zip"
  log "publishing to $app (remote build)"
  az functionapp deployment source config-zip --resource-group "$RESOURCE_GROUP" --name "$app" \
    --src "$zip" --build-remote true --output none
}

build_image() {
  local registry
  registry="$(deploy_output acrName)"
  log "building $GRPC_IMAGE in $registry"
  az acr build --registry "$registry" --image "$GRPC_IMAGE_REPO:$IMAGE_TAG" \
    --file "$REPO_ROOT/grpc_host/Dockerfile" "$REPO_ROOT" --output none
}

# Renders infra/k8s (kustomize when it has a kustomization, else every *.yaml) and fills ONLY the
# documented variables, so other `$` text in the manifests is left alone.
render_manifests() {
  local k8s_dir="$K8S_DIR"
  [[ -d "$k8s_dir" ]] || die "$k8s_dir not found: nothing to apply (or pass --skip-k8s)"
  if [[ -f "$k8s_dir/kustomization.yaml" || -f "$k8s_dir/kustomization.yml" ]]; then
    kubectl kustomize "$k8s_dir"
  else
    local f
    for f in "$k8s_dir"/*.yaml "$k8s_dir"/*.yml; do
      [[ -f "$f" ]] || continue
      printf -- '---\n'; cat "$f"; printf '\n'
    done
  fi | envsubst "$K8S_VARIABLES"
}

apply_manifests() {
  local aks kubeconfig="$WORK_DIR/kubeconfig"
  aks="$(deploy_output aksName)"
  export GRPC_IMAGE AZURE_CLIENT_ID KEY_VAULT_NAME REMOTE_WRITE_URL AZURE_TENANT_ID GRPC_NAMESPACE GRPC_SERVICE_ACCOUNT \
    AUTH_ISSUER AUTH_AUDIENCE
  AZURE_CLIENT_ID="$(deploy_output identityClientId)"
  KEY_VAULT_NAME="$(deploy_output keyVaultName)"
  REMOTE_WRITE_URL="$(deploy_output metricsIngestionUrl)"
  AZURE_TENANT_ID="$(deploy_output tenantId)"
  GRPC_NAMESPACE="$(deploy_output grpcNamespace)"
  GRPC_SERVICE_ACCOUNT="$(deploy_output grpcServiceAccountName)"
  AUTH_ISSUER="$(deploy_output authIssuer)"
  AUTH_AUDIENCE="$(deploy_output authAudience)"
  log "credentials for $aks (Entra ID via kubelogin)"
  az aks get-credentials --resource-group "$RESOURCE_GROUP" --name "$aks" --file "$kubeconfig" \
    --overwrite-existing --output none
  kubelogin convert-kubeconfig --login azurecli --kubeconfig "$kubeconfig"
  log "applying infra/k8s to namespace $GRPC_NAMESPACE"
  render_manifests >"$WORK_DIR/manifests.yaml"
  KUBECONFIG="$kubeconfig" kubectl apply --filename "$WORK_DIR/manifests.yaml"
  KUBECONFIG="$kubeconfig" kubectl --namespace "$GRPC_NAMESPACE" wait --for=condition=Available \
    deployment --all --timeout=300s
}

main() {
  parse_args "$@"
  check_prerequisites
  REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  BICEP_DIR="$REPO_ROOT/infra/bicep"
  RESOURCE_GROUP="${RESOURCE_GROUP:-rg-openai-gateway}"
  LOCATION="${LOCATION:-swedencentral}"
  DEPLOYMENT_NAME="${DEPLOYMENT_NAME:-openai-gateway}"
  PARAMS_FILE="${PARAMS_FILE:-$BICEP_DIR/main.bicepparam}"
  K8S_DIR="${K8S_DIR:-$REPO_ROOT/infra/k8s}"
  FUNCTIONS_PACKAGE_PATHS="${FUNCTIONS_PACKAGE_PATHS:-function_app.py host.json requirements.txt core http_api}"
  GRPC_IMAGE_REPO="${GRPC_IMAGE_REPO:-openai-gateway-grpc}"
  IMAGE_TAG="${IMAGE_TAG:-$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD)}"
  K8S_VARIABLES='${GRPC_IMAGE} ${AZURE_CLIENT_ID} ${KEY_VAULT_NAME} ${REMOTE_WRITE_URL} ${AZURE_TENANT_ID} ${GRPC_NAMESPACE} ${GRPC_SERVICE_ACCOUNT} ${AUTH_ISSUER} ${AUTH_AUDIENCE}'
  [[ -f "$PARAMS_FILE" ]] || die "parameters file '$PARAMS_FILE' not found (set PARAMS_FILE)"
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT

  if ((!SKIP_INFRA)); then
    resolve_admin_principal
    register_providers
    deploy_infra
  fi
  load_outputs
  GRPC_IMAGE="$(deploy_output acrLoginServer)/$GRPC_IMAGE_REPO:$IMAGE_TAG"
  ((SKIP_FUNCTION)) || publish_function_app
  ((SKIP_IMAGE)) || build_image
  ((SKIP_K8S)) || apply_manifests
  log "done"
  echo "Function App:   $(deploy_output functionAppUrl)"
  echo "gRPC image:     $GRPC_IMAGE"
  echo "AKS cluster:    $(deploy_output aksName)"
  echo "Grafana:        $(deploy_output grafanaEndpoint)"
  echo "Remote write:   $(deploy_output metricsIngestionUrl)"
}

main "$@"
