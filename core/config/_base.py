"""The base of every settings section: aliases as users write keys, frozen, unknown keys ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Display names for field names that are not plain PascalCase of the snake_case name.
_DISPLAY = {
    "azure_openai": "AzureOpenAI",
    "tenant_azure_openai_mappings": "TenantAzureOpenAIMappings",
    "api_key": "ApiKey",
    "azure_web_jobs_storage": "AzureWebJobsStorage",
    "prompt_per1k": "PromptPer1K",
    "completion_per1k": "CompletionPer1K",
}


def _alias(field_name: str) -> str:
    return field_name.replace("_", "")


def display_name(field_name: str) -> str:
    """``max_response_tokens`` -> ``MaxResponseTokens`` (the key as users write it)."""
    if field_name in _DISPLAY:
        return _DISPLAY[field_name]
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_"))


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=_alias, populate_by_name=True, extra="ignore"
    )
