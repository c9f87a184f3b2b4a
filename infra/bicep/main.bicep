// Multitenant Azure OpenAI gateway: the whole deployment into ONE resource group.
// Scope: resourceGroup (create the group first: `az group create`; infra/deploy.sh does it).
// Every workload (Function App, gRPC host on AKS) runs as one user-assigned identity whose role
// assignments are made by the module that owns each target resource (narrowest scope).
targetScope = 'resourceGroup'

@description('Azure region for every resource except the Azure OpenAI accounts that set their own.')
param location string = resourceGroup().location

@description('Short lower-case alphanumeric prefix for resource names (3-10 characters).')
@minLength(3)
@maxLength(10)
param namePrefix string = 'oaigw'

@description('Tags applied to every resource.')
param tags object = {}

@description('Azure OpenAI instances: [{ name, location?, deploymentName, modelName, modelVersion, skuName, capacity, maxResponseTokens?, maxRetries? }]. `name` is the gateway instance name (AzureOpenAI:Services:<name>).')
@minLength(2)
param openAiServices array

@description('Azure OpenAI REST API version the gateway calls (AzureOpenAI:Services:<Name>:Version).')
param openAiApiVersion string = '2024-10-21'

@description('Disable API-key auth on the Azure OpenAI accounts (the gateway uses Entra ID).')
param openAiDisableLocalAuth bool = true

@description('Tenant to instance name (TenantAzureOpenAIMappings); unmapped tenants are round-robined.')
param tenantMappings object = {}

@description('System prompt prepended when a conversation has none (AzureOpenAI:SystemPrompt).')
param systemPrompt string = 'You are a helpful, precise and friendly assistant.'

@description('ChatCompletionsOptions:Temperature, as a string (Bicep has no floating-point type).')
param chatTemperature string = '0.7'

@description('ChatCompletionsOptions:MaxTokens.')
@minValue(1)
param chatMaxTokens int = 1000

@description('Auth:Jwt:Issuer: the Entra ID v2 issuer of the tokens callers present (default: this subscription\'s Entra tenant).')
param authIssuer string = '${environment().authentication.loginEndpoint}${subscription().tenantId}/v2.0'

@description('Auth:Jwt:Audience: the gateway app registration\'s client id (the aud of its v2 access tokens); see docs/deploy.md.')
@minLength(1)
param authAudience string

@description('Auth:Jwt:TenantClaim: roles (app roles; each client app is assigned one role, its tenant) or a custom claim.')
param authTenantClaim string = 'roles'

@description('Prometheus:Enabled (token metrics).')
param prometheusEnabled bool = true

@description('StateStore:TableName (round-robin state in Table storage).')
param stateTableName string = 'gatewaystate'

@description('StateStore:LeaseSize (round-robin slots leased per Table round trip).')
@minValue(1)
@maxValue(1000)
param stateLeaseSize int = 16

@description('RemoteWrite:IntervalSeconds (push period to managed Prometheus).')
@minValue(5)
param remoteWriteIntervalSeconds int = 15

@description('Kubernetes namespace of the gRPC host (infra/k8s).')
param grpcNamespace string = 'openai-gateway'

@description('Kubernetes service account of the gRPC host (infra/k8s).')
param grpcServiceAccountName string = 'openai-gateway-grpc'

@description('Object id of the operator granted Grafana Admin, AKS RBAC Cluster Admin and Key Vault Secrets Officer; empty to skip.')
param adminPrincipalId string = ''

@description('Principal type of adminPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param adminPrincipalType string = 'User'

@description('Extra Key Vault secrets: configuration key (`:`, `__` or `--` separators) to value. Stored as <Section>--<Key>.')
@secure()
param keyVaultSecrets object = {}

@description('AKS node VM size.')
param aksNodeVmSize string = 'Standard_D4ds_v5'

@description('AKS minimum node count.')
@minValue(1)
param aksNodeMinCount int = 2

@description('AKS maximum node count.')
@minValue(1)
param aksNodeMaxCount int = 5

@description('AKS pricing tier (Free or Standard with uptime SLA).')
@allowed([
  'Free'
  'Standard'
])
param aksSkuTier string = 'Free'

@description('CIDR ranges allowed to reach the AKS API server; empty allows all.')
param aksApiServerAuthorizedIpRanges array = []

@description('Upper bound on Function App instances (cost guard).')
@minValue(1)
@maxValue(1000)
param functionMaximumInstanceCount int = 40

var suffix = uniqueString(resourceGroup().id, namePrefix)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var names = {
  identity: '${namePrefix}-id-${suffix}'
  storage: take('${compactPrefix}st${suffix}', 24)
  keyVault: take('${compactPrefix}-kv-${suffix}', 24)
  acr: take('${compactPrefix}acr${suffix}', 50)
  aks: '${namePrefix}-aks-${suffix}'
  grafana: take('${compactPrefix}-gf-${suffix}', 23)
  functionApp: '${namePrefix}-func-${suffix}'
}
var openAiAccountNames = [for s in openAiServices: toLower('${compactPrefix}-${s.name}-${suffix}')]

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    namePrefix: '${namePrefix}-${suffix}'
    location: location
    tags: tags
    workloadPrincipalId: identity.outputs.principalId
  }
}

module grafana 'modules/grafana.bicep' = {
  name: 'grafana'
  params: {
    name: names.grafana
    location: location
    tags: tags
    monitorWorkspaceId: monitoring.outputs.monitorWorkspaceId
    monitorWorkspaceName: monitoring.outputs.monitorWorkspaceName
    adminPrincipalId: adminPrincipalId
    adminPrincipalType: adminPrincipalType
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    stateTableName: stateTableName
    workloadPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    workloadPrincipalId: identity.outputs.principalId
    adminPrincipalId: adminPrincipalId
    adminPrincipalType: adminPrincipalType
    secrets: keyVaultSecrets
    settings: gatewaySecrets
  }
}

module openAi 'modules/openai.bicep' = [for (s, i) in openAiServices: {
  name: 'openai-${i}'
  params: {
    name: openAiAccountNames[i]
    location: contains(s, 'location') ? s.location : location
    tags: tags
    deploymentName: s.deploymentName
    modelName: s.modelName
    modelVersion: s.modelVersion
    deploymentSkuName: s.skuName
    deploymentCapacity: s.capacity
    disableLocalAuth: openAiDisableLocalAuth
    workloadPrincipalId: identity.outputs.principalId
  }
}]

module acr 'modules/acr.bicep' = {
  name: 'acr'
  params: {
    name: names.acr
    location: location
    tags: tags
    workloadPrincipalId: identity.outputs.principalId
  }
}

module aks 'modules/aks.bicep' = {
  name: 'aks'
  params: {
    name: names.aks
    location: location
    tags: tags
    skuTier: aksSkuTier
    nodeVmSize: aksNodeVmSize
    nodeMinCount: aksNodeMinCount
    nodeMaxCount: aksNodeMaxCount
    apiServerAuthorizedIpRanges: aksApiServerAuthorizedIpRanges
    dataCollectionRuleId: monitoring.outputs.dataCollectionRuleId
    workloadIdentityName: identity.outputs.name
    serviceAccountNamespace: grpcNamespace
    serviceAccountName: grpcServiceAccountName
    acrName: acr.outputs.name
    adminPrincipalId: adminPrincipalId
    adminPrincipalType: adminPrincipalType
  }
}

// ---- Function App settings: every configuration key the code reads (app-settings.json) ----
// `__` stands for `:`. Azure OpenAI uses Entra ID (Type azuread), so there is no ApiKey setting.
var systemPromptSettings = [
  {
    name: 'AzureOpenAI__SystemPrompt'
    value: systemPrompt
  }
]

var coreSettings = [
  {
    name: 'ChatCompletionsOptions__Temperature'
    value: chatTemperature
  }
  {
    name: 'ChatCompletionsOptions__MaxTokens'
    value: string(chatMaxTokens)
  }
  {
    name: 'Prometheus__Enabled'
    value: prometheusEnabled ? 'true' : 'false'
  }
  {
    name: 'KeyVaultName'
    value: names.keyVault
  }
  {
    name: 'StateStore__Type'
    value: 'table'
  }
  {
    name: 'StateStore__TableName'
    value: stateTableName
  }
  {
    name: 'StateStore__LeaseSize'
    value: string(stateLeaseSize)
  }
  {
    name: 'AzureWebJobsStorage__accountName'
    value: names.storage
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.outputs.clientId
  }
  {
    name: 'RemoteWrite__Enabled'
    value: 'true'
  }
  {
    name: 'RemoteWrite__Url'
    value: monitoring.outputs.metricsIngestionUrl
  }
  {
    name: 'RemoteWrite__Auth'
    value: 'entra'
  }
  {
    name: 'RemoteWrite__ManagedIdentityClientId'
    value: identity.outputs.clientId
  }
  {
    name: 'RemoteWrite__Job'
    value: 'openai-gateway-functions'
  }
  {
    name: 'RemoteWrite__IntervalSeconds'
    value: string(remoteWriteIntervalSeconds)
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identity.outputs.clientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: monitoring.outputs.appInsightsConnectionString
  }
  {
    name: 'PYTHON_ENABLE_INIT_INDEXING'
    value: '1'
  }
]

var openAiServiceSettings = [for (s, i) in openAiServices: [
  {
    name: 'AzureOpenAI__Services__${s.name}__Endpoint'
    value: 'https://${openAiAccountNames[i]}.openai.azure.com/'
  }
  {
    name: 'AzureOpenAI__Services__${s.name}__Type'
    value: 'azuread'
  }
  {
    name: 'AzureOpenAI__Services__${s.name}__Version'
    value: openAiApiVersion
  }
  {
    name: 'AzureOpenAI__Services__${s.name}__Deployment'
    value: s.deploymentName
  }
  {
    name: 'AzureOpenAI__Services__${s.name}__Model'
    value: s.modelName
  }
  {
    name: 'AzureOpenAI__Services__${s.name}__MaxResponseTokens'
    value: string(contains(s, 'maxResponseTokens') ? s.maxResponseTokens : 1000)
  }
  {
    name: 'AzureOpenAI__Services__${s.name}__MaxRetries'
    value: string(contains(s, 'maxRetries') ? s.maxRetries : 3)
  }
]]

var tenantMappingSettings = [for m in items(tenantMappings): {
  name: 'TenantAzureOpenAIMappings__${m.key}'
  value: m.value
}]

// Who the caller is (Auth:*): Entra ID access tokens, checked against the issuer's JWKS; a query or
// header naming another tenant is refused (403). Prometheus:FoldUnknownTenants is on by default then.
var authSettings = [
  {
    name: 'Auth__Mode'
    value: 'jwt'
  }
  {
    name: 'Auth__Jwt__Issuer'
    value: authIssuer
  }
  {
    name: 'Auth__Jwt__Audience'
    value: authAudience
  }
  {
    name: 'Auth__Jwt__TenantClaim'
    value: authTenantClaim
  }
]

// The gateway settings the gRPC pods need too: one list, written both as Function App settings
// and (below) as Key Vault secrets, so the two hosts cannot drift apart.
var gatewaySettings = concat(systemPromptSettings, flatten(openAiServiceSettings), tenantMappingSettings, authSettings)

var functionAppSettings = concat(coreSettings, gatewaySettings)

// ---- Key Vault secrets read by the gRPC host on AKS (KeyVaultName in infra/k8s) ----
// The same names with the C# sample's `--` for `:` (AzureOpenAI--Services--AlphaOpenAI--Endpoint).
// Key Vault secret names allow only letters, digits and `-`: service and tenant names must too.
var gatewaySecrets = [for s in gatewaySettings: {
  name: replace(s.name, '__', '--')
  value: s.value
}]

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: names.functionApp
    location: location
    tags: tags
    identityId: identity.outputs.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    maximumInstanceCount: functionMaximumInstanceCount
    appSettings: functionAppSettings
  }
  dependsOn: [
    openAi
    keyVault
  ]
}

// ---- Outputs read by infra/deploy.sh and the apps ----
output resourceGroupName string = resourceGroup().name
output tenantId string = subscription().tenantId
output functionAppName string = functionApp.outputs.name
output functionAppUrl string = functionApp.outputs.url
output storageAccountName string = storage.outputs.name
output deploymentContainerUrl string = storage.outputs.deploymentContainerUrl
output metricsIngestionUrl string = monitoring.outputs.metricsIngestionUrl
output prometheusQueryEndpoint string = monitoring.outputs.prometheusQueryEndpoint
output appInsightsName string = monitoring.outputs.appInsightsName
output grafanaName string = grafana.outputs.name
output grafanaEndpoint string = grafana.outputs.endpoint
output acrName string = acr.outputs.name
output acrLoginServer string = acr.outputs.loginServer
output aksName string = aks.outputs.name
output aksOidcIssuerUrl string = aks.outputs.oidcIssuerUrl
output identityName string = identity.outputs.name
output identityClientId string = identity.outputs.clientId
output keyVaultName string = keyVault.outputs.name
output keyVaultUri string = keyVault.outputs.uri
output authIssuer string = authIssuer
output authAudience string = authAudience
output grpcNamespace string = grpcNamespace
output grpcServiceAccountName string = grpcServiceAccountName
output openAiEndpoints array = [for (s, i) in openAiServices: openAi[i].outputs.endpoint]
