"""``GET /admin/usage`` as finance and tenants use it: who may read which rows, JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from auth_support import Issuer, SigningKey, new_tenant_key
from gateway_stack import gateway_stack

QUESTION = [{"role": "user", "content": "Tell me about Milan"}]
TODAY = datetime.now(UTC).date()
WIDE = {"from": str(TODAY - timedelta(days=1)), "to": str(TODAY + timedelta(days=2))}


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    server = await Issuer([SigningKey.generate("RS256")]).start()
    yield server
    await server.stop()


@pytest.fixture
def keys() -> dict[str, tuple[str, str]]:
    return {t: new_tenant_key(t) for t in ("acme", "fabrikam", "finance")}


def _auth(keys: dict[str, tuple[str, str]], issuer: Issuer) -> dict[str, Any]:
    return {"Mode": "jwt,keys", "Jwt": {**issuer.settings()["Jwt"], "AdminRole": "Usage.Read.All"},
            "Keys": {"acme": keys["acme"][1], "fabrikam": keys["fabrikam"][1]}, "AdminKeys": keys["finance"][1]}


def _tenants(body: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in body["rows"]:
        out[row["tenant"]] = out.get(row["tenant"], 0) + row["total_tokens"]
    return out


async def test_admins_read_everyone_tenants_only_their_own(tmp_path, keys, issuer) -> None:
    async with gateway_stack(tmp_path, Auth=_auth(keys, issuer)) as stack:
        billed = {}
        for tenant in ("acme", "fabrikam"):
            answer = await stack.client.post("/openai/chat", json=QUESTION, headers={"api-key": keys[tenant][0]})
            billed[tenant] = int(answer.headers["x-total-tokens"])
        finance = await stack.client.get("/admin/usage", params=WIDE, headers={"api-key": keys["finance"][0]})
        by_role = await stack.client.get("/admin/usage", params={**WIDE, "tenant": "acme"}, headers={
            "Authorization": f"Bearer {issuer.token(None, roles=['Usage.Read.All'])}"})
        own = await stack.client.get("/admin/usage", params=WIDE, headers={"api-key": keys["acme"][0]})
        other = await stack.client.get("/admin/usage", params={**WIDE, "tenant": "fabrikam"},
                                       headers={"api-key": keys["acme"][0]})
        anonymous = await stack.client.get("/admin/usage", params=WIDE)
        as_csv = await stack.client.get("/admin/usage", params={**WIDE, "format": "csv", "groupBy": "hour"},
                                        headers={"api-key": keys["finance"][0]})
        bad = await stack.client.get("/admin/usage", params={"from": "yesterday"},
                                     headers={"api-key": keys["finance"][0]})
    assert finance.status_code == 200 and _tenants(finance.json()) == billed
    assert by_role.status_code == 200 and _tenants(by_role.json()) == {"acme": billed["acme"]}
    assert own.status_code == 200 and _tenants(own.json()) == {"acme": billed["acme"]}
    assert other.status_code == 403 and keys["acme"][0] not in other.text
    assert anonymous.status_code == 401
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert {r["tenant"]: int(r["total_tokens"]) for r in rows} == billed
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["detail"]
