"""Every command block of the README works after its first command, ``scripts/run-local.sh``.

The test reads the README's ```bash blocks, starts run-local in the background on free ports
(its ``--rest-port``/``--grpc-port``/``--simulator-ports`` options; the README's commands get the
same ports substituted, the console client gets them from GATEWAY_URL/GATEWAY_GRPC_TARGET) and
runs each command line with bash exactly as written, asserting what a reader would expect to see.
A README command with no check here fails the test, so new commands cannot slip in untested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localrun.ports import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


@dataclass(frozen=True)
class Ports:
    rest: int
    grpc: int
    grpc_metrics: int
    alpha: int
    beta: int

    def substitute(self, line: str) -> str:
        return (line.replace("127.0.0.1:8000", f"127.0.0.1:{self.rest}")
                .replace("127.0.0.1:8002", f"127.0.0.1:{self.grpc}"))


def readme_commands() -> list[str]:
    """Command lines of the README's bash blocks; backslash continuations joined."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                commands.append(line.strip())
    return commands


def _text(out: str) -> None:
    assert out.strip() and not out.lstrip().startswith("{"), out[:300]


def _json_array(out: str) -> None:
    parts = json.loads(out)
    assert isinstance(parts, list) and len(parts) > 1 and all(isinstance(p, str) for p in parts), out[:300]


def _sse(out: str) -> None:
    assert 'data: {"delta"' in out and "event: usage" in out and out.rstrip().endswith("data: [DONE]"), out[-300:]


def _metrics(out: str) -> None:
    assert "openai_total_tokens_total{" in out and "gateway_requests_total{" in out, out[:300]


def _traffic(out: str) -> None:
    assert "200 requests" in out and "TOTAL" in out and "contoso" in out, out[-600:]


# (a piece of the command, what its output must satisfy); None: started or run differently below.
CHECKS: list[tuple[str, Callable[[str], None] | None]] = [
    ("scripts/run-local.sh", None),
    ("/openai/echo?tenant=contoso&value=1", lambda out: _exact(out, "tenant: contoso value: 1")),
    ("/openai/chat?tenant=contoso", _text),
    ("/openai/stream?tenant=acme", _json_array),
    ("Accept: text/event-stream", _sse),
    ("curl http://127.0.0.1:8000/metrics", _metrics),
    ("clients.cli chat", _text),
    ("clients.cli traffic", _traffic),
]
# Commands this test cannot run, and why (asserted to be exactly these).
NOT_RUN = {
    "scripts/test.sh": "runs the whole suite, this test included (CI runs it)",
    "func start": "Azure Functions Core Tools cannot be installed on these machines (design.md); "
                  "tests/functions covers the app as the host indexes it",
}
# The Functions block's set-up commands: run in a scratch copy, on free ports.
SETUP = ("cp local.settings.json.example local.settings.json", "-m simulator --instances")


def _exact(out: str, expected: str) -> None:
    assert out.strip() == expected, out[:300]


def check_for(command: str) -> Callable[[str], None] | None:
    found = [check for piece, check in CHECKS if piece in command]
    assert len(found) == 1, f"README command without exactly one check in this test: {command}"
    return found[0]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    ports = Ports(free_port(), free_port(), free_port(), free_port(), free_port())
    log = tmp_path_factory.mktemp("run-local") / "run-local.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # run-local.sh execs python -m localrun: this PID stops it all
            ["bash", "scripts/run-local.sh", "--rest-port", str(ports.rest), "--grpc-port", str(ports.grpc),
             "--grpc-metrics-port", str(ports.grpc_metrics), "--simulator-ports", f"{ports.alpha},{ports.beta}",
             "--no-prometheus"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(ports.rest, proc, what="scripts/run-local.sh (REST)", timeout=300)
        wait_port(ports.grpc, proc, what="scripts/run-local.sh (gRPC)", timeout=60)
        yield ports
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-2000:]


def run(command: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env={**os.environ, **(env or {})},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, (command, result.returncode, result.stderr[-2000:])
    return result.stdout


def test_the_readme_has_the_commands_this_test_knows():
    commands = readme_commands()
    assert commands[0].startswith("scripts/run-local.sh")
    skipped = {piece for piece in NOT_RUN for command in commands if piece in command}
    assert skipped == set(NOT_RUN)
    for command in commands:
        if not any(piece in command for piece in (*NOT_RUN, *SETUP)):
            check_for(command)


def test_every_readme_command_works_after_run_local(local_run: Ports):
    env = {"GATEWAY_URL": f"http://127.0.0.1:{local_run.rest}",
           "GATEWAY_GRPC_TARGET": f"127.0.0.1:{local_run.grpc}"}
    ran = []
    for command in readme_commands()[1:]:
        if any(piece in command for piece in (*NOT_RUN, *SETUP)):
            continue
        check = check_for(command)
        assert check is not None
        check(run(local_run.substitute(command), env))
        ran.append(command)
    assert len(ran) >= 7


def test_the_functions_blocks_setup_commands_work(tmp_path: Path):
    commands = [c for c in readme_commands() if any(piece in c for piece in SETUP)]
    assert len(commands) == 2
    shutil.copy(ROOT / "local.settings.json.example", tmp_path / "local.settings.json.example")
    run(commands[0], cwd=tmp_path)
    settings = json.loads((tmp_path / "local.settings.json").read_text())
    assert settings["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    alpha, beta = free_port(), free_port()
    simulator = commands[1].replace("8101", str(alpha)).replace("8102", str(beta)).removesuffix("&").strip()
    proc = subprocess.Popen(["bash", "-c", f"exec {simulator}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(alpha, proc, what="the README's simulator command")
        wait_port(beta, proc, what="the README's simulator command")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
