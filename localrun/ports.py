"""Loopback ports for the local run, benchmarks and tests: pick a free one, wait until one opens."""

from __future__ import annotations

import socket
import subprocess
import time


class PortNotOpen(RuntimeError):
    """A process exited, or nothing listened on the port in time."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, *, what: str = "", timeout: float = 30.0
) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; raise :class:`PortNotOpen` if ``proc``
    exits first or ``timeout`` seconds pass (the loop is bounded)."""
    name = what or (" ".join(map(str, proc.args))[:120] if proc is not None else "a process")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PortNotOpen(f"{name} exited with code {proc.returncode}; see the log above")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise PortNotOpen(f"{name} did not open 127.0.0.1:{port} within {timeout:.0f}s")
