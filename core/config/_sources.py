"""Reading settings from their sources and merging them into one tree.

Later sources win: built-in defaults (the models' defaults) -> JSON file -> environment
(``AzureOpenAI__Services__AlphaOpenAI__Endpoint``) -> Key Vault secrets
(``AzureOpenAI--Services--AlphaOpenAI--Endpoint``) when ``KeyVaultName`` is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ._models import SECTIONS, Settings, validate_settings
from ._port import SecretSource

Tree = dict[str, Any]


SecretSourceFactory = Callable[[str], SecretSource]


def load_settings(
    *,
    json_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    secret_source_factory: SecretSourceFactory | None = None,
) -> Settings:
    """Build :class:`Settings` from every source; raise :class:`ConfigurationError` naming the key.

    ``secret_source_factory(vault_name)`` is called only when ``KeyVaultName`` is set; the
    default factory uses Azure Key Vault with ``DefaultAzureCredential``.
    """
    tree: Tree = {}
    if json_path is not None:
        merge(tree, _read_json(Path(json_path)))
    env = os.environ if environ is None else environ
    merge(tree, from_flat_keys(env.items(), "__"))
    vault = str(tree.get(_same_key(tree, "KeyVaultName")) or "").strip()
    if vault:
        factory = secret_source_factory or _key_vault_factory
        merge(tree, from_flat_keys(factory(vault).secrets().items(), "--"))
        merge(tree, from_flat_keys(env.items(), "__"))  # explicit app settings still win
    return validate_settings(tree)


def _key_vault_factory(vault_name: str) -> SecretSource:
    from ._keyvault import KeyVaultSecretSource

    return KeyVaultSecretSource(vault_name)


def _read_json(path: Path) -> Tree:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(str(path), "configuration file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(str(path), f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(str(path), "the top level must be a JSON object")
    return raw


def from_flat_keys(items: Any, separator: str) -> Tree:
    """``[("AzureOpenAI__SystemPrompt", "hi")]`` -> ``{"azureopenai": {"systemprompt": "hi"}}``.

    Only keys whose first segment is a known section are taken, so unrelated environment
    variables (PATH, HOME, ...) are ignored. ``AzureWebJobsStorage`` alone is the
    connection string; ``AzureWebJobsStorage__accountName`` and friends are identity-based.
    """
    tree: Tree = {}
    for key, value in items:
        parts = str(key).split(separator)
        if parts[0].lower() not in SECTIONS or not all(parts):
            continue
        if len(parts) == 1 and parts[0].lower() == "azurewebjobsstorage":
            parts = [parts[0], "ConnectionString"]
        node = tree
        for part in parts[:-1]:
            part = _same_key(node, part)
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[_same_key(node, parts[-1])] = value
    return tree


def merge(into: Tree, new: Mapping[str, Any]) -> None:
    """Deep-merge ``new`` into ``into``, matching keys case-insensitively (the first spelling
    stays); scalars and lists from ``new`` replace old values."""
    for raw_key, value in new.items():
        key = _same_key(into, str(raw_key))
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = {}
            merge(into[key], value)
        else:
            into[key] = value


def _same_key(node: Mapping[str, Any], key: str) -> str:
    lowered = key.lower()
    return next((k for k in node if k.lower() == lowered), key)
