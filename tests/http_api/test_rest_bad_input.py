"""Bad input: every case gets a 4xx problem+json with a detail a person can act on, never a 5xx."""

from __future__ import annotations

import jwt
from gateway_stack import gateway_stack

OK_BODY = b'[{"role":"user","content":"hi"}]'
JSON = {"Content-Type": "application/json"}
KEY = "k" * 32
NO_TENANT_JWT = jwt.encode({"sub": "user-1"}, KEY, algorithm="HS256")
NUMERIC_TENANT_JWT = jwt.encode({"tenant": 42}, KEY, algorithm="HS256")

# (case, method, path, headers, body, status, words the detail must contain)
CASES = [
    ("missing tenant", "GET", "/openai/echo?value=1", {}, None, 400, "no tenant"),
    ("empty tenant", "GET", "/openai/echo?tenant=&value=1", {}, None, 400, "empty"),
    ("empty tenant header", "GET", "/openai/echo?value=1", {"X-Tenant": ""}, None, 400, "empty"),
    ("tenant with space", "GET", "/openai/echo?tenant=a%20b&value=1", {}, None, 400, "letters, digits"),
    ("tenant with slash", "GET", "/openai/echo?tenant=a/b&value=1", {}, None, 400, "letters, digits"),
    ("tenant too long", "GET", f"/openai/echo?tenant={'a' * 65}&value=1", {}, None, 400, "64"),
    ("missing value", "GET", "/openai/echo?tenant=t", {}, None, 400, "'value'"),
    ("non-integer value", "GET", "/openai/echo?tenant=t&value=abc", {}, None, 400, "integer"),
    ("fractional value", "GET", "/openai/echo?tenant=t&value=1.5", {}, None, 400, "integer"),
    ("value over int32", "GET", "/openai/echo?tenant=t&value=4294967296", {}, None, 400, "32-bit"),
    ("value with underscore", "GET", "/openai/echo?tenant=t&value=1_000", {}, None, 400, "ASCII digits"),
    ("value in Arabic-Indic digits", "GET", "/openai/echo?tenant=t&value=%D9%A1%D9%A2", {}, None, 400,
     "ASCII digits"),
    ("value in fullwidth digits", "GET", "/openai/echo?tenant=t&value=%EF%BC%91", {}, None, 400, "ASCII digits"),
    ("value with 5000 digits", "GET", f"/openai/echo?tenant=t&value={'9' * 5000}", {}, None, 400, "integer"),
    ("trailing slash", "GET", "/openai/echo/?tenant=t&value=1", {"Host": "evil.example"}, None, 404, "no route"),
    ("basic auth instead of bearer", "GET", "/openai/echo?value=1", {"Authorization": "Basic dTpw"},
     None, 401, "Bearer"),
    ("bearer that is not a JWT", "GET", "/openai/echo?value=1", {"Authorization": "Bearer abc"},
     None, 401, "JWT"),
    ("JWT without tenant claim", "GET", "/openai/echo?value=1",
     {"Authorization": f"Bearer {NO_TENANT_JWT}"}, None, 401, "tenant"),
    ("JWT with numeric tenant", "GET", "/openai/echo?value=1",
     {"Authorization": f"Bearer {NUMERIC_TENANT_JWT}"}, None, 401, "tenant"),
    ("malformed JSON", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":', 400, "not valid JSON"),
    ("JSON object, not array", "POST", "/openai/chat?tenant=t", JSON, b'{"role":"user"}', 400, "JSON array"),
    ("JSON null", "POST", "/openai/chat?tenant=t", JSON, b"null", 400, "JSON array"),
    ("empty array", "POST", "/openai/chat?tenant=t", JSON, b"[]", 400, "empty"),
    ("element not an object", "POST", "/openai/chat?tenant=t", JSON, b'["hi"]', 400, "object"),
    ("unknown role", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":"wizard","content":"x"}]',
     400, "unknown role"),
    ("missing role", "POST", "/openai/chat?tenant=t", JSON, b'[{"content":"x"}]', 400, "role"),
    ("non-string role", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":1,"content":"x"}]', 400, "role"),
    ("missing content", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":"user"}]', 400, "content"),
    ("non-string content", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":"user","content":5}]',
     400, "must be a string"),
    ("empty content", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":"user","content":"  "}]',
     400, "empty"),
    ("no user message", "POST", "/openai/chat?tenant=t", JSON, b'[{"role":"system","content":"x"}]',
     400, "no user message"),
    ("empty body", "POST", "/openai/chat?tenant=t", JSON, b"", 400, "empty"),
    ("invalid UTF-8", "POST", "/openai/chat?tenant=t", JSON, b'["\xff\xfe"]', 400, "not valid JSON"),
    ("wrong content type", "POST", "/openai/chat?tenant=t", {"Content-Type": "text/plain"}, OK_BODY,
     400, "Content-Type: application/json"),
    ("form content type", "POST", "/openai/chat?tenant=t",
     {"Content-Type": "application/x-www-form-urlencoded"}, OK_BODY, 400, "must be JSON"),
    ("oversized body", "POST", "/openai/chat?tenant=t", JSON,
     b'[{"role":"user","content":"' + b"x" * 5000 + b'"}]', 413, "MaxBodyBytes"),
    ("too many messages", "POST", "/openai/chat?tenant=t", JSON,
     b"[" + b",".join([b'{"role":"user","content":"x"}'] * 9) + b"]", 400, "limit is 8"),
    ("stream: malformed JSON", "POST", "/openai/stream?tenant=t", JSON, b"[", 400, "not valid JSON"),
    ("stream: missing tenant", "POST", "/openai/stream", JSON, OK_BODY, 400, "no tenant"),
    ("stream: unknown role", "POST", "/openai/stream?tenant=t", JSON,
     b'[{"role":"robot","content":"x"}]', 400, "unknown role"),
    ("unknown route", "GET", "/openai/nothing", {}, None, 404, "no route"),
    ("wrong method", "GET", "/openai/chat?tenant=t", {}, None, 405, "not allowed"),
]


async def test_every_bad_input_gets_an_actionable_4xx_problem(tmp_path):
    async with gateway_stack(tmp_path, Gateway={"MaxBodyBytes": 4096, "MaxMessages": 8}) as stack:
        results = []
        for case, method, path, headers, body, status, words in CASES:
            response = await stack.client.request(method, path, headers=headers, content=body)
            results.append((case, response, status, words))
        upstream_calls = stack.alpha.stats.requests + stack.beta.stats.requests
    assert len(CASES) >= 25
    for case, response, status, words in results:
        assert response.status_code == status, (case, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json", case
        problem = response.json()
        assert problem["status"] == status and problem["title"], case
        assert words in problem["detail"], (case, problem["detail"])
        assert "Traceback" not in response.text and "sim-key" not in response.text, case
    assert upstream_calls == 0  # nothing bad reached Azure OpenAI
