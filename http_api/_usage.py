"""``GET /admin/usage``: the ledger as JSON or CSV, for finance (admin) or one tenant (its own rows)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import Request, Response

from core import InvalidRequest
from core.ledger import COLUMNS, UsageLine

MAX_RANGE = timedelta(days=400)


def usage_period(request: Request, now: datetime) -> tuple[datetime, datetime, str]:
    """(from, to, groupBy) from the query: ISO dates or times, UTC when no offset is given.

    Defaults: from the first day of this month (UTC) to now; groupBy ``day``.
    """
    query = request.query_params
    start = _moment(query.get("from"), "from") or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = _moment(query.get("to"), "to") or now
    if end <= start:
        raise InvalidRequest("'to' must be after 'from'")
    if end - start > MAX_RANGE:
        raise InvalidRequest(f"the range is longer than {MAX_RANGE.days} days; ask for a shorter one")
    group_by = (query.get("groupBy") or "day").strip().lower()
    if group_by not in ("hour", "day"):
        raise InvalidRequest("'groupBy' must be 'hour' or 'day'")
    return start, end, group_by


def usage_format(request: Request) -> str:
    fmt = (request.query_params.get("format") or "json").strip().lower()
    if fmt not in ("json", "csv"):
        raise InvalidRequest("'format' must be 'json' or 'csv'")
    return fmt


def usage_response(lines: list[UsageLine], fmt: str, start: datetime, end: datetime, group_by: str) -> Response:
    rows = [line.as_dict() for line in lines]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="usage.csv"'})
    body = {"from": _iso(start), "to": _iso(end), "groupBy": group_by, "rows": rows}
    return Response(orjson.dumps(body), media_type="application/json")


def _moment(raw: str | None, name: str) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isascii():
        raise InvalidRequest(f"'{name}' must be an ISO 8601 date or time such as 2026-12-01 or 2026-12-01T10:00Z")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 date or time such as 2026-12-01 or 2026-12-01T10:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
