"""/docs rendered by a real browser (Debian's headless chromium): every route of /openapi.json
shows as an operation, offline, with no "Unable to render this definition"."""

from __future__ import annotations

import asyncio
import html
import re
import shutil

import pytest
from gateway_stack import gateway_stack

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
OPERATION = re.compile(r'class="opblock opblock-(get|post|put|delete|patch)[^"]*".*?data-path="([^"]+)"', re.S)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is not installed: run `scripts/bootstrap.sh --dev` (apt-get install chromium)")
    return found


async def render(url: str, profile: str) -> str:
    """The DOM after the page's scripts ran (virtual time: no real waiting for timers)."""
    proc = await asyncio.create_subprocess_exec(
        chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
        "--dump-dom", url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out.decode()


async def test_swagger_ui_renders_every_route_as_an_operation_in_chromium(tmp_path):
    async with gateway_stack(tmp_path) as stack:
        spec = (await stack.client.get("/openapi.json")).json()
        dom = await render(f"{stack.url}/docs", str(tmp_path / "chromium-profile"))
    expected = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    shown = {(method, html.unescape(path)) for method, path in OPERATION.findall(dom)}
    assert spec["openapi"].startswith("3.1")
    assert "Unable to render" not in dom
    assert len(expected) >= 5 and shown == expected
    assert "OAS 3.1" in dom  # Swagger UI read the document as 3.1, not a down-converted copy
