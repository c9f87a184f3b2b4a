// Key Vault in RBAC mode for API keys and settings (the gRPC host on AKS reads its instances and
// tenant mappings from here). Secret names follow the C# sample's
// convention: the configuration key with `--` for `:` (AzureOpenAI--Services--Alpha--Endpoint).

@description('Globally unique Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Principal id of the workload identity (granted Key Vault Secrets User).')
param workloadPrincipalId string

@description('Object id of an operator (user or group) granted Key Vault Secrets Officer; empty to skip.')
param adminPrincipalId string = ''

@description('Principal type of adminPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param adminPrincipalType string = 'User'

@description('Secrets to store: configuration key (with `:`, `__` or `--` separators) to value.')
@secure()
param secrets object = {}

@description('Gateway settings to store as secrets: [{ name, value }] with names already in the `--` form (AzureOpenAI--Services--AlphaOpenAI--Endpoint). Must not repeat a key of `secrets`.')
param settings array = []

var secretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var secretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The gateway reads secrets from Flex Consumption and AKS without private endpoints; access is RBAC-only (Key Vault Secrets User for the workload identity).
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for item in items(secrets): {
  // checkov:skip=CKV_AZURE_41:These are configuration values (C# sample keys with --), not credentials with a lifetime; an expiry would make the gateway fail at start-up on a date.
  parent: vault
  name: replace(replace(item.key, ':', '--'), '__', '--')
  properties: {
    value: item.value
    contentType: 'text/plain'
  }
}]

resource settingSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for item in settings: {
  // checkov:skip=CKV_AZURE_41:Gateway settings (endpoints, deployments, tenant mappings), not credentials with a lifetime; an expiry would make the gRPC host fail at start-up on a date.
  parent: vault
  name: item.name
  properties: {
    value: item.value
    contentType: 'text/plain'
  }
}]

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, workloadPrincipalId, secretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRoleId)
    principalId: workloadPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(adminPrincipalId)) {
  name: guid(vault.id, adminPrincipalId, secretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficerRoleId)
    principalId: adminPrincipalId
    principalType: adminPrincipalType
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
