"""Both hosts fail start-up the same way on bad settings: one line naming the key, exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from rest_process import ROOT, SAMPLE

HOSTS = {
    "http_api": ["--port", "0"],
    "grpc_host": ["--port", "0", "--metrics-port", "0"],
}


def start(host: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.lower().startswith(("statestore__", "resthost__"))}
    return subprocess.run([sys.executable, "-m", host, "--config", str(SAMPLE), *HOSTS[host], *args],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str], host: str, key: str) -> None:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, lines)
    assert lines == [lines[0]] and lines[0].startswith(f"{host}: invalid configuration: {key}:"), lines


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_bad_state_store_connection_string_is_one_line_and_exit_2(host):
    result = start(host, StateStore__Type="table", StateStore__ConnectionString="not a connection string")
    assert_one_line(result, host, "StateStore:ConnectionString")


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_bad_gateway_setting_is_one_line_and_exit_2(host):
    result = start(host, AzureOpenAI__Services__AlphaOpenAI__MaxRetries="many")
    assert_one_line(result, host, "AzureOpenAI:Services:AlphaOpenAI:MaxRetries")


def test_a_bad_rest_host_limit_is_one_line_and_exit_2():
    result = start("http_api", RestHost__MaxHeaderBytes="huge")
    assert_one_line(result, "http_api", "RestHost:MaxHeaderBytes")


def test_a_busy_port_is_one_line_and_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "http_api", "--config", str(SAMPLE), "--port", str(port)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert_one_line(result, "http_api", "RestHost:Port")
