"""The Azure Table storage seam of the round-robin state store: take ``n`` slots in one write.

One entity per pool (PartitionKey = sanitised pool name, RowKey ``rr``) holds ``Next``, the first
slot nobody has taken. Taking a lease is an optimistic-concurrency loop:

    read Next and its ETag (or reuse the ETag of our own last write)
    conditional update Next := max(Next, floor) + n   (If-Match: ETag)
    412 -> someone else won: jittered pause, read again, retry (bounded)

so each slot is handed out by the table at most once, whatever the number of writers. A missing
table or entity is created on first use. Azure SDK errors are translated here into
:class:`SharedStateUnavailable` (with a short ``reason`` used as a metric label); nothing else
leaves this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, UpdateMode
from azure.data.tables.aio import TableClient

ROW_KEY = "rr"
_MAX_KEY_CHARS = 512


class SharedStateUnavailable(Exception):
    """The shared state could not be used; ``reason`` is a metric label (``error``, ``contention``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Lease:
    """Slots ``start`` .. ``end - 1`` belong to the caller alone."""

    start: int
    end: int


def partition_key(pool: str) -> str:
    """A Table key for ``pool``: percent-encoded (no ``/ \\ # ?`` or control characters), injective.

    Very long names (over 512 encoded characters) are replaced by their SHA-256 so the key stays
    under the service's 1 KiB limit.
    """
    key = quote(pool, safe="") or "%"
    if len(key) > _MAX_KEY_CHARS:
        key = "sha256-" + hashlib.sha256(pool.encode()).hexdigest()
    return key


@dataclass(slots=True)
class _Seen:
    """What this process last knew of a pool's entity: ``Next`` and the ETag it had then."""

    next: int
    etag: str


class SlotTable:
    """Conditional updates of the ``Next`` counter; one instance per process and table."""

    def __init__(
        self,
        client: TableClient,
        *,
        credential: AsyncTokenCredential | None = None,
        max_attempts: int = 64,
        jitter_cap_seconds: float = 0.02,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._client = client
        self._credential = credential
        self._max_attempts = max_attempts
        self._jitter_cap = jitter_cap_seconds
        self._rng = rng
        self._seen: dict[str, _Seen] = {}

    @property
    def location(self) -> str:
        """``<table endpoint>/<table name>``, for start-up logs (carries no credential)."""
        parts = urlsplit(self._client.url)  # the url carries a SAS token when one is used: drop it
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{self._client.table_name}"

    async def take(self, pool: str, count: int, *, floor: int = 0) -> Lease:
        """Take ``count`` consecutive slots of ``pool``, none below ``floor``."""
        key = partition_key(pool)
        try:
            for attempt in range(self._max_attempts):
                lease = await self._attempt(key, count, floor)
                if lease is not None:
                    if attempt:  # contended: read before the next write too, so that a process
                        self._seen.pop(key, None)  # reusing its own ETag cannot starve the others
                    return lease
                await asyncio.sleep(self._rng(0.0, min(self._jitter_cap, 0.001 * 2**attempt)))
        except HttpResponseError as exc:
            raise SharedStateUnavailable(
                "error",
                f"Table storage answered {exc.status_code} ({getattr(exc, 'error_code', None) or 'no code'})",
            ) from None
        except AzureError as exc:
            raise SharedStateUnavailable("error", f"Table storage unreachable ({type(exc).__name__})") from None
        raise SharedStateUnavailable("contention", f"gave up after {self._max_attempts} conflicting updates")

    async def aclose(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    async def _attempt(self, key: str, count: int, floor: int) -> Lease | None:
        """One read-modify-write; ``None`` when another writer won the race (retry)."""
        seen = self._seen.get(key)
        if seen is None:
            found = await self._read_or_create(key, count, floor)
            if not isinstance(found, _Seen):
                return found  # a first lease (entity created), or None: retry
            seen = found
        start = max(seen.next, floor)
        entity = {"PartitionKey": key, "RowKey": ROW_KEY, "Next": _int64(start + count)}
        try:
            meta = await self._client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=seen.etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code not in (404, 412):
                raise
            self._seen.pop(key, None)  # 412: stale ETag; 404: entity deleted -> read again
            return None
        self._seen[key] = _Seen(start + count, str(meta["etag"]))
        return Lease(start, start + count)

    async def _read_or_create(self, key: str, count: int, floor: int) -> _Seen | Lease | None:
        """The entity as stored now; or, if it did not exist, a first lease created with it."""
        try:
            found = await self._client.get_entity(key, ROW_KEY, select=["Next"])
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                await self._create_table()
                return None
            return await self._create_entity(key, count, floor)
        return _Seen(_value(found.get("Next", 0)), str(found.metadata["etag"]))

    async def _create_entity(self, key: str, count: int, floor: int) -> Lease | None:
        entity = {"PartitionKey": key, "RowKey": ROW_KEY, "Next": _int64(floor + count)}
        try:
            meta = await self._client.create_entity(entity)
        except ResourceExistsError:
            return None  # another writer created it first: read it and retry
        except ResourceNotFoundError:
            await self._create_table()
            return None
        self._seen[key] = _Seen(floor + count, str(meta["etag"]))
        return Lease(floor, floor + count)

    async def _create_table(self) -> None:
        try:
            await self._client.create_table()
        except ResourceExistsError:
            pass  # created meanwhile by another writer


def _int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def _value(raw: Any) -> int:
    """``Next`` as read: Int64 comes back as an EntityProperty, Int32 as a plain int."""
    return int(raw.value if isinstance(raw, EntityProperty) else raw)
