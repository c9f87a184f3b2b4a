"""OpenAPI and Swagger UI work offline: the page loads its assets from the gateway itself."""

from __future__ import annotations

from gateway_stack import gateway_stack


async def test_openapi_documents_the_routes_and_swagger_ui_is_served_locally(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        spec = (await stack.client.get("/openapi.json")).json()
        page = await stack.client.get("/docs")
        script = await stack.client.get("/docs/static/swagger-ui-bundle.js")
        favicon = await stack.client.get("/docs/static/favicon.png")
    assert {"/openai/echo", "/openai/chat", "/openai/stream", "/metrics"} <= set(spec["paths"])
    chat = spec["paths"]["/openai/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["type"] == "array"
    assert {p["name"] for p in chat["parameters"]} == {"tenant", "X-Tenant"}
    assert page.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert script.status_code == 200 and len(script.content) > 100_000
    assert favicon.status_code == 200
