"""Fixtures for running function_app.py inside the real Azure Functions Python runtime (3.13).

The worker runs in ``.venv-func313`` (CPython 3.13 + the app's requirements.txt, which pins
``azure-functions-runtime`` there); ``scripts/bootstrap.sh --dev`` creates it. Without it these tests
fail and say why: they never skip.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from funcrt_support import HERE, ROOT

VENV_PYTHON = ROOT / ".venv-func313" / "bin" / "python"


@pytest.fixture(scope="session")
def worker_python() -> Path:
    """The 3.13 venv's interpreter, after checking it holds the pinned runtime."""
    if not VENV_PYTHON.exists():
        pytest.fail(
            f"{VENV_PYTHON.relative_to(ROOT)} is missing, so function_app.py cannot run in the Azure "
            "Functions Python runtime (azure-functions-runtime needs CPython >= 3.13). Run "
            "scripts/bootstrap.sh --dev: it finds CPython 3.13 (PYTHON313, python3.13 on PATH, pyenv) "
            "and creates the venv; it prints why when there is no CPython 3.13 on this machine.")
    probe = subprocess.run(
        [str(VENV_PYTHON), "-c",
         "import sys, importlib.metadata as m; print(sys.version_info >= (3, 13)); "
         "print(m.version('azure-functions-runtime'))"],
        capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or probe.stdout.split()[:1] != ["True"]:
        pytest.fail(f"{VENV_PYTHON} is not a Python 3.13 venv with azure-functions-runtime: "
                    f"{probe.stdout}{probe.stderr}".strip())
    return VENV_PYTHON


@pytest.fixture(scope="session")
def rpc_protos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """FunctionRpc.proto compiled with grpcio-tools at test time (nothing generated is committed)."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("funcrt_protos")
    include = Path(importlib.import_module("grpc_tools").__file__).parent / "_proto"
    code = protoc.main(["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", str(HERE / "FunctionRpc.proto")])
    assert code == 0, "protoc failed on tests/functions_runtime/FunctionRpc.proto"
    sys.path.insert(0, str(out))
    return out, importlib.import_module("FunctionRpc_pb2")
