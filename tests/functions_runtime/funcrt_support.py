"""Helpers for the stand-in host tests: app settings as env vars, a started host as a context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from funcrt_host import StandInHost

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def app_settings(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A settings tree as Functions app settings: environment variables with ``__`` for ``:``."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}__{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(app_settings(value, name))
        else:
            flat[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return flat


@asynccontextmanager
async def functions_host(worker_python: Path, rpc_protos: tuple[Path, Any], log_path: Path,
                         settings: dict[str, str], app_dir: Path = ROOT,
                         extra_pythonpath: tuple[Path, ...] = ()) -> AsyncIterator[StandInHost]:
    """The stand-in host with the worker started, the app indexed and loaded, HTTP served."""
    protos_dir, protos = rpc_protos
    host = StandInHost(python=worker_python, worker_script=HERE / "funcrt_worker.py", protos_dir=protos_dir,
                       protos=protos, app_dir=app_dir, log_path=log_path,
                       app_settings={"PYTHON_ENABLE_INIT_INDEXING": "1", **settings},
                       extra_pythonpath=extra_pythonpath)
    try:
        await host.start()
        yield host
    finally:
        await host.stop()
