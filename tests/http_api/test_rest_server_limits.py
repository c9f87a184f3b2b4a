"""The local REST server against slow, huge and vanishing clients (``RestHost:*`` limits).

Each test runs ``python -m http_api`` as a process and talks to it over real sockets or with
real clients (urllib, requests, httpx, the openai SDK); the server's log is checked the way an
operator would read it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import httpx
import openai
import pytest
import requests
from rest_process import rest_process, simulators

CHAT = "/openai/chat?tenant=contoso"
BIG = json.dumps([{"role": "user", "content": "x" * (2 * 1024 * 1024)}]).encode()  # 2 MiB > MaxBodyBytes


def raw_exchange(port: int, payload: bytes, *, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(payload)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def assert_quiet(log: str) -> None:
    assert "Traceback" not in log and "ERROR" not in log, log


def test_headers_over_max_header_bytes_get_431_and_are_counted(tmp_path):
    with rest_process(tmp_path, RestHost__MaxHeaderBytes="8192") as server:
        huge = b"GET /openai/echo?tenant=a&value=1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000_000
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sent = 0
            try:
                while sent < len(huge):  # the server must stop reading long before 20 MB
                    sent += sock.send(huge[sent:sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_all(sock)
        ok = urllib.request.urlopen(f"{server.url}/openai/echo?tenant=a&value=1", timeout=10).read()
        counted = server.requests_total("connection", "431")
        log = server.log()
    assert sent < len(huge)  # cut off: the rest was refused (loopback buffers hold a few MB)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"RestHost:MaxHeaderBytes" in answer
    assert ok == b"tenant: a value: 1"  # the server still serves others
    assert counted == 1
    assert_quiet(log)
    assert log.count("RestHost:MaxHeaderBytes") == 1  # one line for the event


def test_slowloris_headers_are_cut_off_with_408_and_counted(tmp_path):
    with rest_process(tmp_path, RestHost__HeaderTimeoutSeconds="1") as server:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /openai/echo?tenant=a&value=1 HTTP/1.1\r\n")
            answer = b""
            for _ in range(20):  # one header line every 0.3 s, never the blank line
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.3)
            answer = read_all(sock)
        elapsed = time.monotonic() - started
        counted = server.requests_total("connection", "408")
        log = server.log()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"RestHost:HeaderTimeoutSeconds" in answer
    assert elapsed < 8
    assert counted == 1
    assert_quiet(log)


def test_a_trickled_body_is_cut_off_with_408_and_counted(tmp_path):
    with rest_process(tmp_path, RestHost__BodyTimeoutSeconds="1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 1000\r\n\r\n[".encode())
            for _ in range(10):
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.3)
            answer = read_all(sock)
        counted = server.requests_total("chat", "408")
        log = server.log()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"RestHost:BodyTimeoutSeconds" in answer
    assert b"connection: close" in answer.lower()
    assert counted == 1
    assert_quiet(log)


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_seconds(tmp_path):
    with rest_process(tmp_path, RestHost__KeepAliveSeconds="1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            answer = read_all(sock)  # returns when the server closes the idle connection
        assert answer.startswith(b"HTTP/1.1 200 ") and time.monotonic() - started < 5


def test_connections_over_max_connections_get_503(tmp_path):
    with rest_process(tmp_path, RestHost__MaxConnections="2") as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10)]
        try:
            time.sleep(0.3)
            second = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            time.sleep(0.3)
            answer = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        after = raw_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        counted = server.requests_total("connection", "503")
    assert second.startswith(b"HTTP/1.1 200 ")  # 2 connections: at the limit, not over it
    assert answer.startswith(b"HTTP/1.1 503 ") and b"RestHost:MaxConnections" in answer
    assert b"retry-after: 1" in answer.lower()
    assert after.startswith(b"HTTP/1.1 200 ")
    assert counted == 1


def _problem_413(status: int, body: bytes | str) -> None:
    assert status == 413
    problem = json.loads(body)
    assert problem["status"] == 413 and "Gateway:MaxBodyBytes" in problem["detail"]


def test_python_clients_posting_2_mb_read_the_413(tmp_path):
    """urllib, requests, httpx and the openai SDK write the whole body before reading: they must
    get the 413 problem, not a reset or a broken pipe."""
    headers = {"Content-Type": "application/json"}
    with rest_process(tmp_path) as server:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(server.url + CHAT, data=BIG, headers=headers), timeout=30)
        _problem_413(caught.value.code, caught.value.read())

        reply = requests.post(server.url + CHAT, data=BIG, headers=headers, timeout=30)
        _problem_413(reply.status_code, reply.content)

        with httpx.Client(base_url=server.url, timeout=30) as client:
            reply_x = client.post(CHAT, content=BIG, headers=headers)
        _problem_413(reply_x.status_code, reply_x.content)

        sdk = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as sdk_error:
            sdk.post(CHAT, cast_to=httpx.Response,
                     body=[{"role": "user", "content": "x" * (2 * 1024 * 1024)}])
        _problem_413(sdk_error.value.status_code, sdk_error.value.response.content)

        counted = server.requests_total("chat", "413")
        log = server.log()
    assert counted == 4
    assert_quiet(log)


def test_client_hang_ups_are_one_line_at_most_and_counted(tmp_path):
    with rest_process(tmp_path) as server:
        for _ in range(5):  # hang up in the middle of the body
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             "Content-Length: 100000\r\n\r\n".encode() + b"[" * 5000)
                time.sleep(0.1)
        for _ in range(3):  # hang up in the middle of the headers
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /openai/echo?tenant=a HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        counted = server.requests_total("chat", "499")
        log = server.log()
    assert counted == 5
    assert_quiet(log)
    assert log.count("hung up") <= 5


def test_trailing_slash_does_not_redirect_to_the_host_header(tmp_path):
    with rest_process(tmp_path) as server:
        answer = raw_exchange(server.port, b"GET /openai/echo/?tenant=a&value=1 HTTP/1.1\r\n"
                                           b"Host: evil.example\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert b"evil.example" not in answer and b"location:" not in answer.lower()


def test_a_client_leaving_mid_stream_is_counted_as_499_and_still_billed(tmp_path):
    body = b'[{"role":"user","content":"Tell me a long story about Milan"}]'
    with simulators(tmp_path, per_token_latency_ms=20) as upstreams, rest_process(tmp_path, **upstreams) as server:
        for accept in ("application/json", "text/event-stream"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(f"POST /openai/stream?tenant=contoso HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        time.sleep(2)
        counted = server.requests_total("stream", "499")
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        log = server.log()
    assert counted == 2
    assert 'openai_total_tokens_total{method_name="stream",openai_name="alphaopenai",tenant_name="contoso"}' in metrics
    assert_quiet(log)
