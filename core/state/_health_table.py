"""Instance health on Azure Table storage: one entity per instance in the state store's table.

PartitionKey ``%health`` (a percent-encoded pool name can never be that: ``%he`` is not an escape),
RowKey the percent-encoded instance name. A publish is an upsert (merge) of the instance's row;
a read is one partition query. Azure SDK errors become :class:`BoardUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ._health_port import BoardUnavailable, HealthRecord
from ._location import TableLocation
from ._table import open_table

PARTITION = "%health"
_FIELDS = ("CoolingUntil", "OpenUntil", "MisconfiguredUntil")


class TableHealthBoard:
    def __init__(self, client: TableClient, *, credential: AsyncTokenCredential | None = None) -> None:
        self._client = client
        self._credential = credential

    async def read(self) -> list[HealthRecord]:
        try:
            entities = self._client.query_entities(f"PartitionKey eq '{PARTITION}'")
            return [_record(entity) async for entity in entities]
        except ResourceNotFoundError:
            return []  # no table yet: nobody has published anything
        except AzureError as exc:
            raise _unavailable(exc) from None

    async def publish(self, records: Sequence[HealthRecord]) -> None:
        try:
            for record in records:
                await self._upsert(record)
        except AzureError as exc:
            raise _unavailable(exc) from None

    async def aclose(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    async def _upsert(self, record: HealthRecord) -> None:
        entity = {"PartitionKey": PARTITION, "RowKey": quote(record.instance, safe=""),
                  "CoolingUntil": record.cooling_until, "OpenUntil": record.open_until,
                  "MisconfiguredUntil": record.misconfigured_until, "Detail": record.detail[:1000]}
        try:
            await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except ResourceNotFoundError:
            try:
                await self._client.create_table()
            except ResourceExistsError:
                pass
            await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)


def _record(entity: Any) -> HealthRecord:
    cooling, open_, misconfigured = (_float(entity.get(name)) for name in _FIELDS)
    return HealthRecord(unquote(str(entity.get("RowKey", ""))), cooling, open_, misconfigured,
                        str(entity.get("Detail") or ""))


def _float(raw: Any) -> float:
    try:
        return float(raw or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _unavailable(exc: AzureError) -> BoardUnavailable:
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or "no code"
        return BoardUnavailable("error", f"Table storage answered {exc.status_code} ({code})")
    return BoardUnavailable("error", f"Table storage unreachable ({type(exc).__name__})")


def table_health_board(location: TableLocation) -> TableHealthBoard:
    """The board in the table at ``location`` (the state store's); no network I/O."""
    client, credential = open_table(location)
    return TableHealthBoard(client, credential=credential)
