"""The budget store on Azure Table storage: one entity per tenant, ETag optimistic concurrency.

PartitionKey = the tenant (percent-encoded, as the round-robin leases encode pool names), RowKey
``limits``, in the state store's table (``StateStore:TableName``; the leases use RowKey ``rr``).
``Buckets`` holds the live buckets as JSON ``[[bucket, tokens, requests], ...]`` (at most
``N + 2`` of them). An update is

    read the entity and its ETag (or reuse the ETag of our own last write)
    apply the change
    conditional replace (If-Match: ETag), or create when there was none
    412 / 409 -> another replica won: jittered pause, read again, retry (bounded)

Azure SDK errors become :class:`StoreUnavailable` here; nothing else leaves this module.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from ..state._table_lease import partition_key
from ._port import Row, StoreUnavailable, T, Tally

ROW_KEY = "limits"


@dataclass(frozen=True, slots=True)
class _Seen:
    row: Row
    etag: str | None  # None: the entity does not exist (create it)


class TableBudgetStore:
    """The :class:`BudgetStore` port on one Table; one instance per process."""

    def __init__(
        self,
        client: TableClient,
        *,
        credential: AsyncTokenCredential | None = None,
        max_attempts: int = 32,
        jitter_cap_seconds: float = 0.02,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._client = client
        self._credential = credential
        self._max_attempts = max_attempts
        self._jitter_cap = jitter_cap_seconds
        self._rng = rng
        self._seen: dict[str, _Seen] = {}

    async def update(self, key: str, change: Callable[[Row], tuple[Row, T]]) -> T:
        pk = partition_key(key)
        try:
            for attempt in range(self._max_attempts):
                seen = self._seen.pop(pk, None) or await self._read(pk)
                row, result = change(seen.row)
                etag = await self._write(pk, row, seen.etag)
                if etag is not None:
                    if not attempt:  # uncontended: our write is the latest, reuse its ETag next time
                        self._seen[pk] = _Seen(row, etag)
                    return result
                await asyncio.sleep(self._rng(0.0, min(self._jitter_cap, 0.001 * 2**attempt)))
        except HttpResponseError as exc:
            raise StoreUnavailable(
                "error", f"Table storage answered {exc.status_code} ({getattr(exc, 'error_code', None) or 'no code'})"
            ) from None
        except AzureError as exc:
            raise StoreUnavailable("error", f"Table storage unreachable ({type(exc).__name__})") from None
        raise StoreUnavailable("contention", f"gave up after {self._max_attempts} conflicting updates")

    async def aclose(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    async def _read(self, pk: str) -> _Seen:
        try:
            entity = await self._client.get_entity(pk, ROW_KEY, select=["Buckets"])
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                await self._create_table()
            return _Seen({}, None)
        return _Seen(decode(entity.get("Buckets")), str(entity.metadata["etag"]))

    async def _write(self, pk: str, row: Row, etag: str | None) -> str | None:
        """The new ETag, or None when another writer changed (or created) the entity first."""
        entity = {"PartitionKey": pk, "RowKey": ROW_KEY, "Buckets": encode(row)}
        try:
            if etag is None:
                meta = await self._client.create_entity(entity)
            else:
                meta = await self._client.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except ResourceExistsError:
            return None  # created meanwhile by another replica
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                await self._create_table()
            return None  # deleted meanwhile, or no table yet: read again
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return None
            raise
        return str(meta["etag"])

    async def _create_table(self) -> None:
        try:
            await self._client.create_table()
        except ResourceExistsError:
            pass


def encode(row: Row) -> str:
    return json.dumps([[b, t.tokens, t.requests] for b, t in sorted(row.items())], separators=(",", ":"))


def decode(raw: Any) -> Row:
    """The stored buckets; a value this version cannot read counts as empty (it ages out anyway)."""
    if not isinstance(raw, str):
        return {}
    try:
        items = json.loads(raw)
        return {int(b): Tally(int(t), int(r)) for b, t, r in items}
    except (ValueError, TypeError):
        return {}
