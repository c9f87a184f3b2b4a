"""Key Vault secret source (azure-keyvault-secrets + azure-identity), the only importer of both."""

from __future__ import annotations

from collections.abc import Mapping

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from .._errors import ConfigurationError


class KeyVaultSecretSource:
    """Reads every enabled secret of a vault once, at start-up (``https://<name>.vault.azure.net``)."""

    def __init__(self, vault_name: str, *, vault_url: str | None = None) -> None:
        self._vault_name = vault_name
        self._url = vault_url or f"https://{vault_name}.vault.azure.net"

    def secrets(self) -> Mapping[str, str]:
        credential = DefaultAzureCredential()
        client = SecretClient(vault_url=self._url, credential=credential)
        try:
            found: dict[str, str] = {}
            for props in client.list_properties_of_secrets():
                if props.enabled is False or not props.name:
                    continue
                value = client.get_secret(props.name).value
                if value is not None:
                    found[props.name] = value
            return found
        except ClientAuthenticationError:
            raise ConfigurationError(
                "KeyVaultName",
                f"could not authenticate to Key Vault '{self._vault_name}'; give the app's identity "
                "the 'Key Vault Secrets User' role",
            ) from None
        except HttpResponseError as exc:
            raise ConfigurationError(
                "KeyVaultName",
                f"Key Vault '{self._vault_name}' answered {exc.status_code}: {exc.reason}",
            ) from None
        except AzureError as exc:
            raise ConfigurationError(
                "KeyVaultName", f"Key Vault '{self._vault_name}' is unreachable ({type(exc).__name__})"
            ) from None
        finally:
            client.close()
            credential.close()
