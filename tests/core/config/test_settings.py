"""Configuration: the C# sample's keys from JSON, environment and Key Vault; errors name the key."""

from __future__ import annotations

import json
import logging

import pytest

from core import ConfigurationError, build_gateway, load_settings

SAMPLE = {
    "AzureOpenAI": {
        "SystemPrompt": "from json",
        "Services": {
            "AlphaOpenAI": {"Endpoint": "https://alpha.openai.azure.com/", "ApiKey": "json-key",
                            "Type": "azure", "Version": "2024-06-01", "Deployment": "gpt-35",
                            "Model": "gpt-35", "MaxResponseTokens": 1000, "MaxRetries": 3},
            "BetaOpenAi": {"Endpoint": "https://beta.openai.azure.com/", "Type": "azuread",
                           "Deployment": "gpt-35"},
        },
    },
    # The C# sample's own appsettings maps to "BetaOpenAI" while the service is "BetaOpenAi".
    "TenantAzureOpenAIMappings": {"Contoso": "AlphaOpenAI", "fabrikam": "BetaOpenAI"},
    "ChatCompletionsOptions": {"Temperature": 0.8, "MaxTokens": 16000, "StopSequences": ["END"]},
    "Prometheus": {"Histograms": {"PromptTokens": {"Start": 5, "Width": 5, "Count": 4}}},
}


class FakeVault:
    """Stands in for Azure Key Vault, which is unreachable here; the real adapter is
    ``core.config._keyvault.KeyVaultSecretSource`` and receives the same ``--`` secret names."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets_by_name = secrets
        self.vaults: list[str] = []

    def __call__(self, vault: str) -> FakeVault:
        self.vaults.append(vault)
        return self

    def secrets(self) -> dict[str, str]:
        return self.secrets_by_name


@pytest.fixture
def sample_file(tmp_path):
    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps(SAMPLE))
    return path


def test_json_file_with_the_c_sharp_sample_layout(sample_file):
    settings = load_settings(json_path=sample_file, environ={})
    alpha = settings.azure_openai.services["AlphaOpenAI"]
    assert alpha.api_key.get_secret_value() == "json-key" and alpha.max_retries == 3
    assert settings.tenant_azure_openai_mappings == {"contoso": "AlphaOpenAI", "fabrikam": "BetaOpenAI"}
    assert settings.service_named("BetaOpenAI")[0] == "BetaOpenAi"
    assert settings.chat_completions_options.stop_sequences == ("END",)
    assert settings.prometheus.histograms["prompttokens"].start == 5
    assert settings.prometheus.histograms["totaltokens"].width == 100  # default kept


def test_environment_overrides_json_with_double_underscores(sample_file):
    env = {"AzureOpenAI__Services__AlphaOpenAI__MaxRetries": "5",
           "AZUREOPENAI__SYSTEMPROMPT": "from env",
           "ChatCompletionsOptions__StopSequences__0": "A", "ChatCompletionsOptions__StopSequences__1": "B",
           "TenantAzureOpenAIMappings__Initech": "alphaopenai", "PATH": "/usr/bin"}
    settings = load_settings(json_path=sample_file, environ=env)
    assert settings.azure_openai.services["AlphaOpenAI"].max_retries == 5
    assert settings.azure_openai.system_prompt == "from env"
    assert settings.chat_completions_options.stop_sequences == ("A", "B")
    assert settings.tenant_azure_openai_mappings["initech"] == "alphaopenai"


def test_key_vault_secrets_with_double_dashes_override_json(sample_file):
    vault = FakeVault({"AzureOpenAI--Services--AlphaOpenAI--ApiKey": "vault-key",
                       "TenantAzureOpenAIMappings--globex": "BetaOpenAi", "unrelated-secret": "x"})
    settings = load_settings(json_path=sample_file, environ={"KeyVaultName": "tankeyvault"},
                             secret_source_factory=vault)
    assert vault.vaults == ["tankeyvault"]
    assert settings.azure_openai.services["AlphaOpenAI"].api_key.get_secret_value() == "vault-key"
    assert settings.tenant_azure_openai_mappings["globex"] == "BetaOpenAi"


def test_no_key_vault_is_read_without_key_vault_name(sample_file):
    vault = FakeVault({})
    load_settings(json_path=sample_file, environ={}, secret_source_factory=vault)
    assert vault.vaults == []


@pytest.mark.parametrize(("env", "key", "words"), [
    ({"AzureOpenAI__Services__AlphaOpenAI__MaxRetries": "many"},
     "AzureOpenAI:Services:AlphaOpenAI:MaxRetries", "integer"),
    ({"AzureOpenAI__Services__AlphaOpenAI__Type": "apikey"}, "AzureOpenAI:Services:AlphaOpenAI:Type", "azuread"),
    ({"AzureOpenAI__Services__AlphaOpenAI__Endpoint": "alpha.openai"},
     "AzureOpenAI:Services:AlphaOpenAI:Endpoint", "http(s) URL"),
    ({"TenantAzureOpenAIMappings__acme": "GammaOpenAI"}, "TenantAzureOpenAIMappings:acme", "GammaOpenAI"),
    ({"ChatCompletionsOptions__Temperature": "7"}, "ChatCompletionsOptions:Temperature", "less than"),
    ({"Prometheus__Histograms__TotalTokens__Count": "0"}, "Prometheus:Histograms:TotalTokens:Count",
     "greater than or equal to 1"),
    ({"StateStore__Type": "redis"}, "StateStore:Type", "memory"),
    ({"AzureOpenAI__Services__AlphaOpenAI__ApiKey": "secret-key\n"}, "AzureOpenAI:Services:AlphaOpenAI:ApiKey",
     "whitespace or control characters"),
    ({"AzureOpenAI__Services__AlphaOpenAI__ApiKey": "sec ret"}, "AzureOpenAI:Services:AlphaOpenAI:ApiKey",
     "whitespace"),
    ({"AzureOpenAI__Services__AlphaOpenAI__Priority": "0"}, "AzureOpenAI:Services:AlphaOpenAI:Priority",
     "greater than or equal to 1"),
    ({"Gateway__CircuitBreaker__Failures": "none"}, "Gateway:CircuitBreaker:Failures", "integer"),
    ({"Gateway__MaxWaitSeconds": "-1"}, "Gateway:MaxWaitSeconds", "greater than or equal to 0"),
    ({"Telemetry__ExportPriority": "high"}, "Telemetry:ExportPriority", "'idle' or 'normal'"),
])
def test_invalid_configuration_fails_at_start_naming_the_key(sample_file, env, key, words):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(json_path=sample_file, environ=env)
    assert caught.value.key == key
    assert words in caught.value.detail


def test_a_bad_api_key_is_named_but_never_shown(sample_file):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(json_path=sample_file, environ={"AzureOpenAI__Services__AlphaOpenAI__ApiKey": "s3cr3t\r\n"})
    assert "s3cr3t" not in str(caught.value)


def test_failover_settings_from_the_environment(sample_file):
    env = {"Gateway__MaxWaitSeconds": "1.5", "Gateway__MaxCooldownSeconds": "20",
           "Gateway__CircuitBreaker__Failures": "3", "Gateway__CircuitBreaker__OpenSeconds": "15",
           "AzureOpenAI__Services__AlphaOpenAI__Priority": "2", "AzureOpenAI__Services__AlphaOpenAI__Weight": "4"}
    settings = load_settings(json_path=sample_file, environ=env)
    gateway, alpha = settings.gateway, settings.azure_openai.services["AlphaOpenAI"]
    assert (gateway.max_wait_seconds, gateway.max_cooldown_seconds) == (1.5, 20)
    assert (gateway.circuit_breaker.failures, gateway.circuit_breaker.window_seconds,
            gateway.circuit_breaker.open_seconds) == (3, 10, 15)
    assert (alpha.priority, alpha.weight) == (2, 4)
    assert settings.azure_openai.services["BetaOpenAi"].priority == 1


def test_unreadable_json_file_is_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"broken\.json: not valid JSON"):
        load_settings(json_path=broken, environ={})
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings(json_path=tmp_path / "missing.json", environ={})


def test_instance_without_credentials_is_skipped_with_a_logged_reason(sample_file, caplog):
    env = {"AzureOpenAI__Services__AlphaOpenAI__ApiKey": "",
           "AzureOpenAI__Services__GammaOpenAI__Deployment": "gpt-35"}
    settings = load_settings(json_path=sample_file, environ=env)
    with caplog.at_level(logging.WARNING, logger="core.build"):
        gateway = build_gateway(settings)
    assert "skipping Azure OpenAI instance AlphaOpenAI: Type is 'azure' but ApiKey is empty" in caplog.text
    assert "skipping Azure OpenAI instance GammaOpenAI: Endpoint is empty" in caplog.text
    assert gateway._router.instances == ("BetaOpenAi",)
    assert "json-key" not in caplog.text
