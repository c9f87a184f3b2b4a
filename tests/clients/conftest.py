"""Fixtures: one local run (real processes on 127.0.0.1) shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clients_stack import LocalRun, Processes, start_local_run


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    procs = Processes()
    try:
        yield start_local_run(tmp_path_factory.mktemp("local-run"), procs)
    finally:
        procs.stop_all()


@pytest.fixture
def run(local_run: LocalRun) -> Iterator[LocalRun]:
    """The local run with no fault left over from a previous test."""
    local_run.clear_faults()
    yield local_run
    local_run.clear_faults()
    local_run.wait_until_instances_closed()


@pytest.fixture
def rest_run(run: LocalRun) -> LocalRun:
    assert run.rest_url is not None, "the local run did not start the REST app"
    return run
