"""The suite-wide secret scan can fail: a test that logs a registered secret is reported, on a
non-propagating logger and inside a traceback too, without the secret appearing in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

SECRET = "gwk_Zm9vYmFyYmF6cXV4LXRlc3Qtc2VjcmV0"


@pytest.fixture(autouse=True)
def _plugin_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent))


@pytest.mark.parametrize(
    "logging_code",
    [
        "logging.getLogger('app').warning('key %s', SECRET)",
        "log = logging.getLogger('quiet'); log.propagate = False; log.addHandler(logging.NullHandler()); "
        "log.error('got ' + SECRET)",
        "try:\n        raise ValueError(SECRET)\n"
        "    except ValueError:\n        logging.getLogger('x').exception('boom')",
    ],
    ids=["root-propagating", "non-propagating", "in-traceback"],
)
def test_a_logged_secret_fails_the_test(pytester: pytest.Pytester, logging_code: str) -> None:
    pytester.makeconftest('pytest_plugins = ["secret_scan"]')
    pytester.makepyfile(f"""
import logging
from secret_scan import register_secret
SECRET = {SECRET!r}

def test_leaks():
    register_secret(SECRET, "the test key")
    {logging_code}
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    reports = [line for line in result.outlines if "secret scan:" in line or "secrets in log records:" in line]
    assert any("logged the test key" in line for line in reports)
    assert not any(SECRET in line for line in reports)  # the scan's own report never repeats it


def test_a_secret_logged_before_it_was_registered_fails_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["secret_scan"]')
    pytester.makepyfile(f"""
import logging
from secret_scan import register_secret

def test_a_logs():
    logging.getLogger("a").warning("early {SECRET}")

def test_b_registers():
    register_secret({SECRET!r}, "the late key")
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "logged the late key" in result.stdout.str()


def test_clean_logs_pass(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["secret_scan"]')
    pytester.makepyfile(f"""
import logging
from secret_scan import register_secret

def test_clean():
    register_secret({SECRET!r})
    logging.getLogger("a").warning("nothing to see")
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == 0


def test_subprocess_output_handed_over_is_scanned_too(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["secret_scan"]')
    pytester.makepyfile(f"""
from secret_scan import record_output, register_secret

def test_child():
    register_secret({SECRET!r}, "the child's key")
    record_output("child stderr", "INFO started with key {SECRET}")
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    assert "logger 'child stderr' logged the child's key" in result.stdout.str()
