"""What the real runtime refuses at indexing (WorkerInitRequest), which ``get_functions()`` lets through."""

from __future__ import annotations

import shutil

import pytest
from funcrt_host import HostError
from funcrt_support import ROOT, app_settings, functions_host
from gateway_stack import KEYS, settings_tree, start_simulator

CLASSIC_TRIGGER = '''

@app.route(route="classic", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def classic(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("classic")
'''


@pytest.fixture
async def settings():
    alpha = await start_simulator("AlphaOpenAI")
    beta = await start_simulator("BetaOpenAI")
    yield app_settings(settings_tree({"AlphaOpenAI": alpha, "BetaOpenAI": beta}))
    await alpha.stop()
    await beta.stop()


async def test_bad_app_setting_fails_indexing_naming_the_key_without_the_secret(
        worker_python, rpc_protos, tmp_path, settings):
    settings["AzureOpenAI__Services__AlphaOpenAI__MaxRetries"] = "lots"
    with pytest.raises(HostError) as failed:
        async with functions_host(worker_python, rpc_protos, tmp_path / "worker.log", settings):
            pass
    message = str(failed.value)
    assert message.startswith("WorkerInitRequest failed:")
    assert "AzureOpenAI:Services:AlphaOpenAI:MaxRetries" in message
    assert KEYS["AlphaOpenAI"] not in message and KEYS["BetaOpenAI"] not in message


async def test_a_classic_http_trigger_next_to_extension_triggers_fails_indexing(
        worker_python, rpc_protos, tmp_path, settings):
    """The trap of the FastAPI extension: once it is imported, every HTTP trigger must use its
    types. ``app.get_functions()`` accepts the mixed app; the runtime refuses to index it."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(ROOT / "host.json", app_dir / "host.json")
    (app_dir / "function_app.py").write_text((ROOT / "function_app.py").read_text() + CLASSIC_TRIGGER)
    with pytest.raises(HostError) as failed:
        async with functions_host(worker_python, rpc_protos, tmp_path / "worker.log", settings,
                                  app_dir=app_dir, extra_pythonpath=(ROOT,)):
            pass
    message = str(failed.value)
    assert "FunctionLoadError: cannot load the classic function" in message
    assert "HttpRequest" in message
