// Azure Container Registry for the gRPC host image. Admin user disabled: pulls use Entra ID.

@description('Globally unique registry name (5-50 alphanumerics).')
@minLength(5)
@maxLength(50)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Principal id of the workload identity (granted AcrPull).')
param workloadPrincipalId string

var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139:Images are pushed from the operator's machine and pulled by AKS without private endpoints; admin user and anonymous pull are disabled.
  // checkov:skip=CKV_AZURE_166:Quarantine/content trust needs the Premium SKU and a signing pipeline; the image is built from this repository by infra/deploy.sh.
  name: name
  location: location
  tags: tags
  // Standard: 100 GiB included storage and the scan integration Defender for Containers uses.
  sku: {
    name: 'Standard'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource workloadAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, workloadPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: workloadPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = registry.id
output name string = registry.name
output loginServer string = registry.properties.loginServer
