"""The ledger in Azure Table storage (azure-data-tables): the only module of the ledger that imports it.

    PartitionKey  <tenant>|<yyyymmdd>                          one tenant-day: a batch commits atomically
    RowKey        <yyyymmddHH>|<instance>|<deployment>|<writer>
    properties    Tenant, Day, Hour, Instance, Deployment, Writer, Requests, PromptTokens,
                  CompletionTokens, ReportedTokens, CountedTokens (Int64), Cost (Double)

A flush upserts (replace) each dirty row with its cumulative counts, up to 100 rows of one
partition per transaction (``submit_transaction``), so a retried flush writes the same values
again. Azure SDK errors become :class:`LedgerUnavailable`; nothing else leaves this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from ._port import LedgerUnavailable
from ._rows import Counts, LedgerKey, LedgerRow, in_range

_BATCH = 100  # Table storage's limit of operations per transaction
_FORBIDDEN = str.maketrans({c: "_" for c in "/\\#?|\t\n\r"})


def _safe(value: str) -> str:
    """A key part Table storage accepts ('/', '\\', '#', '?' and control characters are not)."""
    return value.translate(_FORBIDDEN)


def _partition(key: LedgerKey) -> str:
    return f"{_safe(key.tenant)}|{key.hour:%Y%m%d}"


def _entity(row: LedgerRow) -> dict[str, Any]:
    k, c = row.key, row.counts
    return {
        "PartitionKey": _partition(k),
        "RowKey": f"{k.hour:%Y%m%d%H}|{_safe(k.instance)}|{_safe(k.deployment)}|{_safe(k.writer)}",
        "Tenant": k.tenant, "Day": f"{k.hour:%Y%m%d}", "Hour": k.hour, "Instance": k.instance,
        "Deployment": k.deployment, "Writer": k.writer,
        "Requests": _int64(c.requests), "PromptTokens": _int64(c.prompt_tokens),
        "CompletionTokens": _int64(c.completion_tokens), "ReportedTokens": _int64(c.reported_tokens),
        "CountedTokens": _int64(c.counted_tokens), "Cost": float(c.cost),
    }


def _row(entity: Any) -> LedgerRow:
    hour = entity["Hour"]
    hour = hour if hour.tzinfo else hour.replace(tzinfo=UTC)
    key = LedgerKey(str(entity["Tenant"]), hour.astimezone(UTC), str(entity["Instance"]),
                    str(entity["Deployment"]), str(entity["Writer"]))
    counts = Counts(
        _int(entity.get("Requests")), _int(entity.get("PromptTokens")), _int(entity.get("CompletionTokens")),
        _int(entity.get("ReportedTokens")), _int(entity.get("CountedTokens")), float(entity.get("Cost") or 0.0),
    )
    return LedgerRow(key, counts)


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _int(raw: Any) -> int:
    """Int64 comes back as an EntityProperty, Int32 as a plain int."""
    if raw is None:
        return 0
    return int(raw.value if isinstance(raw, EntityProperty) else raw)


class TableLedgerStore:
    def __init__(self, client: TableClient, *, credential: Any = None, timeout_seconds: float = 10.0) -> None:
        self._client = client
        self._credential = credential
        self._timeout = timeout_seconds
        self._table_ready = False

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        ordered = sorted(rows, key=lambda r: (_partition(r.key), r.key))
        try:
            async with asyncio.timeout(self._timeout):
                for _, group in groupby(ordered, key=lambda r: _partition(r.key)):
                    batch = list(group)
                    for start in range(0, len(batch), _BATCH):
                        await self._submit([_entity(r) for r in batch[start:start + _BATCH]])
        except TimeoutError:
            raise LedgerUnavailable("timeout", f"Table storage did not answer within {self._timeout:g}s") from None

    async def read(self, tenant: str | None, start: datetime, end: datetime) -> list[LedgerRow]:
        first, last = f"{start.astimezone(UTC):%Y%m%d}", f"{(end - timedelta(microseconds=1)).astimezone(UTC):%Y%m%d}"
        if tenant is None:
            query, params = "Day ge @first and Day le @last", {"first": first, "last": last}
        else:
            query = "PartitionKey ge @low and PartitionKey le @high"
            params = {"low": f"{_safe(tenant)}|{first}", "high": f"{_safe(tenant)}|{last}"}
        rows: list[LedgerRow] = []
        try:
            async with asyncio.timeout(self._timeout * 3):
                async for entity in self._client.query_entities(query, parameters=params):
                    row = _row(entity)
                    if in_range(row.key.hour, start, end) and (tenant is None or row.key.tenant == tenant):
                        rows.append(row)
        except ResourceNotFoundError:
            return []  # nothing was ever flushed
        except TimeoutError:
            raise LedgerUnavailable("timeout", "Table storage did not answer the usage query in time") from None
        except AzureError as exc:
            raise LedgerUnavailable("storage", f"the usage query failed ({type(exc).__name__})") from None
        return rows

    async def aclose(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    async def _submit(self, entities: list[dict[str, Any]]) -> None:
        operations: list[Any] = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
        for attempt in (1, 2):
            try:
                await self._client.submit_transaction(operations)
                return
            except ResourceNotFoundError:
                if attempt == 2 or self._table_ready:
                    raise LedgerUnavailable("storage", "the ledger table does not exist") from None
                await self._create_table()
            except TableTransactionError as exc:
                code = str(getattr(exc, "error_code", "") or "")
                if code == "TableNotFound" and attempt == 1:
                    await self._create_table()
                    continue
                detail = f"Table storage refused the batch ({code or exc.status_code})"
                raise LedgerUnavailable("rejected", detail) from None
            except AzureError as exc:
                raise LedgerUnavailable("connection", f"Table storage failed ({type(exc).__name__})") from None

    async def _create_table(self) -> None:
        try:
            await self._client.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise LedgerUnavailable("connection", f"cannot create the ledger table ({type(exc).__name__})") from None
        self._table_ready = True
