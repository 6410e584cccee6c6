"""Fixtures for tests that run tasks inside flows in the test process."""

from __future__ import annotations

import pytest

from tests.support.processes import PrefectServerProcess


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: PrefectServerProcess) -> None:
    """Run in-process flows against the session's Prefect server.

    The session server is the one PREFECT_API_URL names, so blocks saved by one test
    and flow runs of another meet on the same server.
    """
