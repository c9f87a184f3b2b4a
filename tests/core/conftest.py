"""Azurite (the Azure Storage emulator, Table service) as a real process for the state-store tests.

Installed by ``scripts/bootstrap.sh --dev`` into ``.cache/azurite``. Missing Azurite fails the
Azurite tests with the reason (never a silent skip).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AZURITE_DIR = Path(os.environ.get("AZURITE_DIR", ROOT / ".cache" / "azurite"))
AZURITE_BIN = AZURITE_DIR / "node_modules" / ".bin" / "azurite-table"
# Azurite's published development account key: public, not a secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def connection_string(port: int) -> str:
    """An explicit connection string for the development account on 127.0.0.1:``port``."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={DEV_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


class Azurite:
    """One azurite-table process on 127.0.0.1:``port`` with its data in ``workdir``."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "azurite.log").open("ab")
        self._proc = subprocess.Popen(
            [str(AZURITE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(self.port),
             "--location", str(self.workdir), "--disableTelemetry", "--silent"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while not _port_open(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"azurite did not start on port {self.port}; see {self.workdir}/azurite.log")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: node and nothing else
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def require_azurite() -> None:
    if AZURITE_BIN.exists():
        return
    pytest.fail(f"Azurite is not installed ({AZURITE_BIN} missing): run scripts/bootstrap.sh --dev")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A session-wide Azurite; tests isolate themselves by table or pool name."""
    require_azurite()
    server = Azurite(free_port(), tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of the test's own, which the test may stop and restart (same port, same data)."""
    require_azurite()
    server = Azurite(free_port(), tmp_path / "azurite")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage_connection_string() -> Callable[[int], str]:
    """Connection strings for any local port (e.g. a server that is not Azurite)."""
    return connection_string
