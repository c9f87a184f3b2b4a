// Function App on Flex Consumption (FC1, Python 3.13, Linux) running as the workload
// user-assigned identity. The deployment package lives in a blob container reached with that
// identity; no storage key appears anywhere. App settings are composed in main.bicep.

@description('Function App name (globally unique host name).')
param name string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Resource id of the workload user-assigned identity.')
param identityId string

@description('Blob container URL that holds the deployment package.')
param deploymentContainerUrl string

@description('App settings as an array of { name, value }.')
param appSettings array

@description('Python version of the Flex Consumption runtime. On 3.13 the app runs on the azure-functions-runtime version that requirements.txt pins (runtime version control); 3.11 and 3.12 run on the platform worker.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

@description('Upper bound on Flex Consumption instances (cost guard).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption is available only in some regions; enable it per region when it is offered.
  name: '${name}-plan'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:The gateway is a public HTTP API for the SaaS backends; callers are authenticated by the gateway (tenant JWT).
  // checkov:skip=CKV_AZURE_17:Callers authenticate with Bearer JWTs, not TLS client certificates.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales out from zero on demand; always-ready instances are a cost option, not set by default.
  // checkov:skip=CKV_AZURE_213:App Service health check does not apply to Flex Consumption (the platform manages instance health); probe GET /openai/echo externally.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output url string = 'https://${site.properties.defaultHostName}'
