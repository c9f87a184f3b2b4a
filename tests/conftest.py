"""Suite-wide plugins: the secret scan of every log record (secret_scan.py) and pytester (to test
it); every test's own temporary directory."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["secret_scan", "pytester"]


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The temp dir of each test, for this process (``tempfile``) and the processes it starts
    (``TMPDIR``). The Azure Monitor exporter keeps what it could not send under the temp dir, in a
    directory named after the instrumentation key, the user and the process: the same for every
    test and benchmark run, so without this a test's exporter resends envelopes another test (or a
    benchmark) left there, to its own ingestion stand-in."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield
