// AKS for the gRPC host: OIDC issuer + workload identity, Azure RBAC (no local accounts), managed
// Prometheus metrics add-on associated with the shared data collection rule, the federated
// credential for the gRPC host's service account, and AcrPull for the kubelet identity.

@description('Cluster name.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Kubernetes version; empty for the region default.')
param kubernetesVersion string = ''

@description('AKS pricing tier: Free (no SLA) or Standard (uptime SLA).')
@allowed([
  'Free'
  'Standard'
])
param skuTier string = 'Free'

@description('VM size of the system/user node pool.')
param nodeVmSize string = 'Standard_D4ds_v5'

@description('Minimum node count (autoscaler).')
@minValue(1)
param nodeMinCount int = 2

@description('Maximum node count (autoscaler).')
@minValue(1)
param nodeMaxCount int = 5

@description('CIDR ranges allowed to reach the API server; empty allows all.')
param apiServerAuthorizedIpRanges array = []

@description('Resource id of the managed Prometheus data collection rule.')
param dataCollectionRuleId string

@description('Name of the workload user-assigned identity (same resource group).')
param workloadIdentityName string

@description('Kubernetes namespace of the gRPC host (must match infra/k8s).')
param serviceAccountNamespace string = 'openai-gateway'

@description('Kubernetes service account of the gRPC host (must match infra/k8s).')
param serviceAccountName string = 'openai-gateway-grpc'

@description('Name of the container registry the kubelet pulls from (same resource group).')
param acrName string

@description('Object id granted Azure Kubernetes Service RBAC Cluster Admin; empty to skip.')
param adminPrincipalId string = ''

@description('Principal type of adminPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param adminPrincipalType string = 'User'

var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var clusterAdminRoleId = 'b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b'

resource aks 'Microsoft.ContainerService/managedClusters@2024-05-01' = {
  // checkov:skip=CKV_AZURE_8:The kube-dashboard add-on does not exist on supported Kubernetes versions; nothing to disable.
  // checkov:skip=CKV_AZURE_172:The Secrets Store CSI driver is not installed: the gRPC host reads Key Vault with the SDK and its workload identity.
  // checkov:skip=CKV_AZURE_4:Metrics go to managed Prometheus; Container Insights (container logs to Log Analytics) is an opt-in cost item.
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Base'
    tier: skuTier
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    dnsPrefix: name
    kubernetesVersion: empty(kubernetesVersion) ? null : kubernetesVersion
    enableRBAC: true
    disableLocalAccounts: true
    aadProfile: {
      managed: true
      enableAzureRBAC: true
      tenantID: subscription().tenantId
    }
    agentPoolProfiles: [
      {
        name: 'system'
        mode: 'System'
        type: 'VirtualMachineScaleSets'
        osType: 'Linux'
        osSKU: 'AzureLinux'
        vmSize: nodeVmSize
        osDiskType: 'Ephemeral'
        osDiskSizeGB: 64
        enableEncryptionAtHost: true
        count: nodeMinCount
        enableAutoScaling: true
        minCount: nodeMinCount
        maxCount: nodeMaxCount
        maxPods: 110
      }
    ]
    networkProfile: {
      networkPlugin: 'azure'
      networkPluginMode: 'overlay'
      networkDataplane: 'cilium'
      networkPolicy: 'cilium'
      loadBalancerSku: 'standard'
    }
    apiServerAccessProfile: {
      authorizedIPRanges: apiServerAuthorizedIpRanges
    }
    oidcIssuerProfile: {
      enabled: true
    }
    securityProfile: {
      workloadIdentity: {
        enabled: true
      }
    }
    azureMonitorProfile: {
      metrics: {
        enabled: true
        kubeStateMetrics: {
          metricLabelsAllowlist: ''
          metricAnnotationsAllowList: ''
        }
      }
    }
    autoUpgradeProfile: {
      upgradeChannel: 'patch'
      nodeOSUpgradeChannel: 'NodeImage'
    }
  }
}

// Sends the metrics add-on's scrapes to the shared DCR (and so to the Azure Monitor workspace).
resource prometheusDcra 'Microsoft.Insights/dataCollectionRuleAssociations@2022-06-01' = {
  name: 'MSProm-${location}-${name}'
  scope: aks
  properties: {
    description: 'Managed Prometheus: deleting this association stops metrics collection for the cluster.'
    dataCollectionRuleId: dataCollectionRuleId
  }
}

resource workloadIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: workloadIdentityName
}

// Lets pods running as <namespace>/<service account> exchange their token for the identity's.
resource federatedCredential 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: workloadIdentity
  name: '${name}-${serviceAccountName}'
  properties: {
    issuer: aks.properties.oidcIssuerProfile.issuerURL
    subject: 'system:serviceaccount:${serviceAccountNamespace}:${serviceAccountName}'
    audiences: [
      'api://AzureADTokenExchange'
    ]
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: acrName
}

// Image pulls are done by the kubelet identity, not the pod's workload identity.
resource kubeletAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, aks.id, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: aks.properties.identityProfile.kubeletidentity.objectId
    principalType: 'ServicePrincipal'
  }
}

resource clusterAdmin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(adminPrincipalId)) {
  name: guid(aks.id, adminPrincipalId, clusterAdminRoleId)
  scope: aks
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', clusterAdminRoleId)
    principalId: adminPrincipalId
    principalType: adminPrincipalType
  }
}

output id string = aks.id
output name string = aks.name
output oidcIssuerUrl string = aks.properties.oidcIssuerProfile.issuerURL
output federatedSubject string = federatedCredential.properties.subject
