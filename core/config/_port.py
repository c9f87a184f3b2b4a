"""The secret source port: where settings stored as secrets come from (Key Vault). Imports no SDK."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class SecretSource(Protocol):
    """Where secrets come from (Key Vault in production)."""

    def secrets(self) -> Mapping[str, str]:
        """All enabled secrets, by name (``Section--Key--Sub``)."""
        ...
