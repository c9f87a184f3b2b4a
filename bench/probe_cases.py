"""The bad inputs of bench/probe_bad_input.py: raw HTTP requests for REST, raw or odd calls for gRPC.

Each REST case is (category, name, bytes to send, how the client behaves). ``wait`` cases read
the answer until the server closes; ``hangup`` cases send part of a request and close, as a
client that goes away would (nothing to read: they are checked in the logs and the counters).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

WAIT, HANGUP = "wait", "hangup"


@dataclass(frozen=True)
class RestCase:
    category: str
    name: str
    payload: bytes
    mode: str = WAIT


def request(method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes | None = None,
            *, version: str = "HTTP/1.1", length: bool = True) -> bytes:
    lines = [f"{method} {target} {version}", "Host: probe"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    if body is not None and length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + (body or b"")


def _jwt(claims: dict[str, object], alg: str = "none") -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."


def raw_http_cases() -> list[RestCase]:
    echo = "/openai/echo?tenant=contoso&value=1"
    raw = {
        "garbage bytes": b"\x00\x01\x02\x03\r\n\r\n",
        "TLS ClientHello on the plain port": bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64,
        "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "unknown HTTP version": f"GET {echo} HTTP/9.9\r\nHost: x\r\n\r\n".encode(),
        "no HTTP version": f"GET {echo}\r\n\r\n".encode(),
        "space in header name": f"GET {echo} HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".encode(),
        "NUL in header value": f"GET {echo} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".encode(),
        "header without colon": f"GET {echo} HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n".encode(),
        "bare LF line endings": f"GET {echo} HTTP/1.1\nHost: x\nConnection: close\n\n".encode(),
        "negative Content-Length": b"POST /openai/chat?tenant=t HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "non-numeric Content-Length": b"POST /openai/chat?tenant=t HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        "two different Content-Lengths": b"POST /openai/chat?tenant=t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                         b"Content-Length: 3\r\n\r\n[]",
        "Content-Length and chunked": b"POST /openai/chat?tenant=t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "broken chunked encoding": b"POST /openai/chat?tenant=t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                   b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n",
        "pipelined garbage after a request": request("GET", echo).replace(b"Connection: close\r\n", b"")
                                             + b"\x16\x03\x01garbage\r\n\r\n",
    }
    cases = [RestCase("raw HTTP", name, payload) for name, payload in raw.items()]
    cases += [
        RestCase("raw HTTP", "100 KB header", request("GET", echo, [("X-Big", "a" * 100_000)])),
        RestCase("raw HTTP", "100 KB URL", request("GET", echo + "&pad=" + "a" * 100_000)),
        RestCase("raw HTTP", "3000 headers", request("GET", echo, [(f"X-H{i}", "v") for i in range(3000)])),
        RestCase("raw HTTP", "unknown method", request("BREW", echo)),
        RestCase("raw HTTP", "CONNECT", request("CONNECT", "probe:443")),
        RestCase("raw HTTP", "TRACE", request("TRACE", echo)),
        RestCase("raw HTTP", "OPTIONS", request("OPTIONS", echo)),
        RestCase("raw HTTP", "DELETE on chat", request("DELETE", "/openai/chat?tenant=t")),
        RestCase("raw HTTP", "absolute-form target", request("GET", "http://evil.example" + echo)),
        RestCase("raw HTTP", "dot segments", request("GET", "/openai/../metrics")),
        RestCase("raw HTTP", "bad percent-encoding", request("GET", "/openai/echo?tenant=%zz&value=1")),
        RestCase("raw HTTP", "trailing slash (no redirect)", request("GET", "/openai/echo/?tenant=t&value=1")),
        RestCase("raw HTTP", "double slash", request("GET", "//openai/echo?tenant=t&value=1")),
        RestCase("raw HTTP", "websocket upgrade", request("GET", echo, [("Upgrade", "websocket"),
                                                                        ("Connection", "Upgrade")])),
        RestCase("raw HTTP", "h2c upgrade", request("GET", echo, [("Upgrade", "h2c"), ("HTTP2-Settings", "AAA")])),
        RestCase("raw HTTP", "HTTP/1.0 without Host", f"GET {echo} HTTP/1.0\r\n\r\n".encode()),
        RestCase("raw HTTP", "unknown route", request("GET", "/openai/nothing")),
        RestCase("raw HTTP", "Expect 100-continue over the limit", request(
            "POST", "/openai/chat?tenant=t", [("Content-Type", "application/json"), ("Expect", "100-continue"),
                                              ("Content-Length", "50000000")], length=False)),
    ]
    return cases


def echo_cases() -> list[RestCase]:
    values = ["", "abc", "1.5", "1e3", "0x10", "1_000", "%D9%A1%D9%A2", "%EF%BC%91", "+", "-", "%20", "9" * 5000,
              "2147483648", "-2147483649", "NaN", "Infinity", "1,000", "1%20000", "--1", "+-1", "1%00", "%E2%85%A0"]
    tenants = ["", "%20%20", "a%20b", "a/b", "..", ".", "a" * 65, "%EF%BD%83ontoso", "%E2%84%AAelvin",
               "tenant%00", "%F0%9F%98%80", "%ff%fe", "a%0d%0aX-Injected:%201", "%3Cscript%3E"]
    cases = [RestCase("echo value", f"value={v[:20]}", request("GET", f"/openai/echo?tenant=contoso&value={v}"))
             for v in values]
    cases.append(RestCase("echo value", "no value", request("GET", "/openai/echo?tenant=contoso")))
    cases += [RestCase("tenant", f"tenant={t[:20]}", request("GET", f"/openai/echo?tenant={t}&value=1"))
              for t in tenants]
    cases += [RestCase("tenant", "X-Tenant latin-1 bytes",
                       b"GET /openai/echo?value=1 HTTP/1.1\r\nHost: x\r\nX-Tenant: caf\xe9\r\n"
                       b"Connection: close\r\n\r\n")]
    auth = {
        "Basic credentials": "Basic dXNlcjpwYXNz",
        "Bearer not a JWT": "Bearer abc",
        "empty Bearer": "Bearer ",
        "JWT alg none without tenant": "Bearer " + _jwt({"sub": "x"}),
        "JWT numeric tenant": "Bearer " + _jwt({"tenant": 42}),
        "JWT list tenant": "Bearer " + _jwt({"tenant": ["a", "b"]}),
        "JWT with 50 KB claim": "Bearer " + _jwt({"tenant": "a", "pad": "x" * 20_000}),
        "JWT bad base64": "Bearer a.!!!.c",
    }
    cases += [RestCase("auth", name, request("GET", "/openai/echo?value=1", [("Authorization", value)]))
              for name, value in auth.items()]
    return cases


def body_cases() -> list[RestCase]:
    json_type = [("Content-Type", "application/json")]
    bodies: dict[str, tuple[list[tuple[str, str]], bytes]] = {
        "malformed JSON": (json_type, b'[{"role":'),
        "JSON object": (json_type, b'{"role":"user","content":"x"}'),
        "JSON null": (json_type, b"null"),
        "JSON number 1e400": (json_type, b"1e400"),
        "empty array": (json_type, b"[]"),
        "empty body": (json_type, b""),
        "array of strings": (json_type, b'["hi"]'),
        "unknown role": (json_type, b'[{"role":"wizard","content":"x"}]'),
        "no user message": (json_type, b'[{"role":"system","content":"x"}]'),
        "content not a string": (json_type, b'[{"role":"user","content":{"a":1}}]'),
        "blank content": (json_type, b'[{"role":"user","content":" \\n\\t "}]'),
        "lone surrogate": (json_type, b'[{"role":"user","content":"\\ud800"}]'),
        "invalid UTF-8": (json_type, b'[{"role":"user","content":"\xff\xfe"}]'),
        "UTF-16 body": (json_type, '[{"role":"user","content":"x"}]'.encode("utf-16")),
        "nesting 100000 deep": (json_type, b"[" * 100_000 + b"]" * 100_000),
        "trailing garbage": (json_type, b'[{"role":"user","content":"x"}]xyz'),
        "NaN literal": (json_type, b'[{"role":"user","content":NaN}]'),
        "300 messages": (json_type, json.dumps([{"role": "user", "content": "x"}] * 300).encode()),
        "content of 200001 chars": (json_type, json.dumps([{"role": "user", "content": "x" * 200_001}]).encode()),
        "2 MB body": (json_type, json.dumps([{"role": "user", "content": "x" * 2_000_000}]).encode()),
        "text/plain": ([("Content-Type", "text/plain")], b'[{"role":"user","content":"x"}]'),
        "form encoded": ([("Content-Type", "application/x-www-form-urlencoded")], b"role=user&content=x"),
        "multipart": ([("Content-Type", "multipart/form-data; boundary=x")], b"--x\r\n\r\nhi\r\n--x--"),
        "gzip that is not gzip": ([*json_type, ("Content-Encoding", "gzip")], b"not gzip"),
        "no tenant": (json_type, b'[{"role":"user","content":"x"}]'),
    }
    cases = []
    for route in ("chat", "stream"):
        for name, (headers, body) in bodies.items():
            target = f"/openai/{route}" if name == "no tenant" else f"/openai/{route}?tenant=contoso"
            cases.append(RestCase(f"{route} body", name, request("POST", target, headers, body)))
    return cases


def hangup_cases() -> list[RestCase]:
    """Clients that go away: counted and at most one log line each, never a traceback."""
    head = b"POST /openai/chat?tenant=contoso HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return [
        RestCase("hang-up", "after half the body", head + b"Content-Length: 1000\r\n\r\n" + b"[" * 500, HANGUP),
        RestCase("hang-up", "right after the headers", head + b"Content-Length: 1000\r\n\r\n", HANGUP),
        RestCase("hang-up", "mid chunked body", head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n[[[[[\r\n", HANGUP),
        RestCase("hang-up", "stream: after half the body",
                 head.replace(b"/chat", b"/stream") + b"Content-Length: 999\r\n\r\n[{", HANGUP),
        RestCase("hang-up", "mid headers", b"GET /openai/echo?tenant=a&value=1 HTTP/1.1\r\nHost:", HANGUP),
        RestCase("hang-up", "mid request line", b"GET /openai/ec", HANGUP),
    ]


def slow_cases() -> list[RestCase]:
    """Slowloris: headers or body never finish; answered 408 by the deadline, then closed."""
    head = "POST /openai/chat?tenant=contoso HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return [
        RestCase("slow client", "headers never finish", b"GET /openai/echo?tenant=a&value=1 HTTP/1.1\r\nX-A: 1\r\n"),
        RestCase("slow client", "body never finishes", (head + "Content-Length: 100\r\n\r\n[").encode()),
        RestCase("slow client", "chunked body never finishes",
                 (head + "Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n").encode()),
    ]


def rest_cases() -> list[RestCase]:
    return [*raw_http_cases(), *echo_cases(), *body_cases(), *hangup_cases(), *slow_cases()]
