// One Azure OpenAI account with its chat deployment. main.bicep loops over the service list.

@description('Account name; also the custom sub-domain (https://<name>.openai.azure.com/).')
@minLength(2)
@maxLength(64)
param name string

@description('Azure region of this account (model availability differs per region).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Deployment name the gateway calls (AzureOpenAI:Services:<Name>:Deployment).')
param deploymentName string

@description('Model name, e.g. gpt-4o-mini.')
param modelName string

@description('Model version, e.g. 2024-07-18.')
param modelVersion string

@description('Deployment SKU, e.g. GlobalStandard, Standard, DataZoneStandard.')
param deploymentSkuName string = 'GlobalStandard'

@description('Deployment capacity in thousands of tokens per minute.')
@minValue(1)
param deploymentCapacity int = 10

@description('Disable API-key auth so only Entra ID tokens are accepted.')
param disableLocalAuth bool = true

@description('Principal id of the workload identity (granted Cognitive Services OpenAI User).')
param workloadPrincipalId string

var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134:The Flex Consumption app (no VNet integration) calls the account over its public endpoint; local auth is disabled so every call needs an Entra token for the workload identity.
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: disableLocalAuth
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSkuName
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    versionUpgradeOption: 'NoAutoUpgrade'
  }
}

resource openAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, workloadPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: workloadPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
