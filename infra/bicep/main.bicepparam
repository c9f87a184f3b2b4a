// Example parameters: two Azure OpenAI instances, two mapped tenants (others are round-robined).
// Deploy: infra/deploy.sh (or az deployment group create -g <rg> -f main.bicep -p main.bicepparam).
using 'main.bicep'

param namePrefix = 'oaigw'

param tags = {
  workload: 'openai-gateway'
}

param openAiServices = [
  {
    name: 'AlphaOpenAI'
    location: 'swedencentral'
    deploymentName: 'gpt-4o-mini'
    modelName: 'gpt-4o-mini'
    modelVersion: '2024-07-18'
    skuName: 'GlobalStandard'
    capacity: 50
    maxResponseTokens: 1000
    maxRetries: 3
  }
  {
    name: 'BetaOpenAI'
    location: 'eastus2'
    deploymentName: 'gpt-4o-mini'
    modelName: 'gpt-4o-mini'
    modelVersion: '2024-07-18'
    skuName: 'GlobalStandard'
    capacity: 50
    maxResponseTokens: 1000
    maxRetries: 3
  }
]

param tenantMappings = {
  contoso: 'AlphaOpenAI'
  fabrikam: 'BetaOpenAI'
}

// Callers authenticate with Entra ID access tokens (Auth:Mode=jwt). The audience is the client id of
// the gateway's app registration (docs/deploy.md); the issuer defaults to this subscription's tenant.
param authAudience = readEnvironmentVariable('GATEWAY_AUTH_AUDIENCE', '00000000-0000-0000-0000-000000000000')
param authTenantClaim = 'roles'

param systemPrompt = 'You are a helpful, precise and friendly assistant.'
param chatTemperature = '0.7'
param chatMaxTokens = 1000
param stateLeaseSize = 16

// Must match infra/k8s (namespace and service account of the gRPC host).
param grpcNamespace = 'openai-gateway'
param grpcServiceAccountName = 'openai-gateway-grpc'

// infra/deploy.sh exports the signed-in operator's object id; empty skips the admin role grants.
param adminPrincipalId = readEnvironmentVariable('ADMIN_PRINCIPAL_ID', '')
param adminPrincipalType = readEnvironmentVariable('ADMIN_PRINCIPAL_TYPE', 'User')

param aksNodeVmSize = 'Standard_D4ds_v5'
param aksNodeMinCount = 2
param aksNodeMaxCount = 5
param functionMaximumInstanceCount = 40
