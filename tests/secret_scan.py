"""A pytest plugin: no secret a test registered may appear in any log record of the whole run.

Tests call ``register_secret(...)`` with every key, token and key hash they create. Every log
record emitted in this process — on any logger, propagating or not (uvicorn's loggers do not
propagate to the root), at whatever level the logger lets through — is rendered (message,
exception text, stack) and kept. After each test, the records of that test are scanned for every
secret registered so far; at the end of the session, all records are scanned again for all
secrets (a secret registered after it was logged is still found). A hit fails the test (teardown
error) or the session, naming the logger and the secret's *label*, never the secret itself.

Records are taken at ``Logger.callHandlers``, the one place every emitted record passes through,
so a handler-less or non-propagating logger cannot hide one. Subprocesses log to their own
stderr: fixtures that capture it hand it over with ``record_output(source, text)`` (the gRPC host
process fixture does), and it is scanned like a log record.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class _Scan:
    secrets: dict[str, str] = field(default_factory=dict)  # secret -> label
    records: list[tuple[str, str]] = field(default_factory=list)  # (logger, rendered text), whole session
    test_start: int = 0
    original: Callable[[logging.Logger, logging.LogRecord], None] | None = None

    def capture(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: keep what there is
            text = f"{record.msg!s} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        self.records.append((record.name, text))

    def leaks(self, start: int = 0) -> list[str]:
        records = self.records[start:]
        blob = "\n".join(text for _, text in records)  # one pass per secret, then details for hits only
        hits = {secret: label for secret, label in self.secrets.items() if secret in blob}
        found = {f"logger {name!r} logged {label}" for name, text in records
                 for secret, label in hits.items() if secret in text}
        return sorted(found)


_SCAN = _Scan()


def register_secret(value: str, label: str = "a registered secret") -> str:
    """Declare ``value`` a secret that must never be logged; returns it (for inline use)."""
    if len(value) < 8:
        raise ValueError("register secrets of at least 8 characters (short ones match by chance)")
    _SCAN.secrets[value] = label
    return value


def record_output(source: str, text: str) -> None:
    """Scan ``text`` (a subprocess's captured log output) like a log record of logger ``source``."""
    _SCAN.records.append((source, text))


def pytest_configure(config: pytest.Config) -> None:
    original = logging.Logger.callHandlers
    _SCAN.original = original

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        _SCAN.capture(record)
        original(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SCAN.original is not None:
        logging.Logger.callHandlers = _SCAN.original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_secret_in_logs() -> Iterator[None]:
    start = len(_SCAN.records)
    yield
    leaks = _SCAN.leaks(start)
    if leaks:
        pytest.fail("secrets in log records: " + "; ".join(leaks), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = _SCAN.leaks()
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("secret scan: " + "; ".join(leaks), red=True)
