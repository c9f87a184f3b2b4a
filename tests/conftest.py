"""Suite-wide plugins: the secret scan of every log record (secret_scan.py) and pytester (to test
it); every test's own temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

pytest_plugins = ["secret_scan", "pytester"]
_BASE = tempfile.gettempdir()


@pytest.fixture(autouse=True)
def own_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temp dir of each test's own, for this process (``tempfile``) and the processes it starts
    (``TMPDIR``). The Azure Monitor exporter keeps what it could not send under the temp dir, in a
    directory named after the instrumentation key, the user and the process: the same for every
    test and benchmark run, so without this a test's exporter resends envelopes another test (or a
    benchmark) left there, to its own ingestion stand-in. Short (``/tmp/tmpXXXXXXXX``): Chromium and
    the hosts put Unix sockets under it, whose paths are limited to 107 bytes."""
    tmp_path_factory.getbasetemp()  # pytest's own base (tmp_path), made under the system temp dir first
    temp = tempfile.mkdtemp(dir=_BASE)
    monkeypatch.setenv("TMPDIR", temp)
    monkeypatch.setattr(tempfile, "tempdir", temp)
    yield
    shutil.rmtree(temp, ignore_errors=True)
