"""Where an Azure table lives, as plain values. Imports no SDK."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TableLocation:
    """Where a table lives, as plain values (the composition root reads them from settings).

    A connection string wins; else ``endpoint`` is reached with Entra ID (``DefaultAzureCredential``,
    ``client_id`` picking a user-assigned identity). ``*_key`` name the settings the values came
    from, so that errors point a person at the right one.
    """

    table_name: str
    table_name_key: str = "StateStore:TableName"
    connection_string: str = ""
    connection_string_key: str = "StateStore:ConnectionString"
    endpoint: str = ""
    endpoint_key: str = "StateStore:TableServiceUri"
    client_id: str = ""
