"""Fixtures: a real Prometheus (Debian's ``prometheus`` package) for the observability tests.

The session server listens on 127.0.0.1 with ``--web.enable-remote-write-receiver`` and scrapes
whatever targets a test writes into its file-SD targets file (every second). Without the binary
the tests fail, saying to run ``scripts/bootstrap.sh --dev`` (which installs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prom_server import PrometheusServer, require_prometheus

from localrun.ports import free_port


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    require_prometheus()
    server = PrometheusServer(free_port(), tmp_path_factory.mktemp("prometheus")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_prometheus(tmp_path: Path) -> Iterator[Callable[[int], PrometheusServer]]:
    """Start extra Prometheus servers (on a chosen port) that are stopped after the test."""
    started: list[PrometheusServer] = []

    def make(port: int) -> PrometheusServer:
        server = PrometheusServer(port, tmp_path / f"prometheus-{port}")
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
