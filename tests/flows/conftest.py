"""Fixtures for the flow and task tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.feishu_server import FeishuBotServer, running_feishu_server
from tests.servers.openai_server import OpenAIServer
from tests.support.processes import PrefectServerProcess


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: PrefectServerProcess) -> None:
    """Run in-process flows against the session's Prefect server.

    The session server is the one PREFECT_API_URL names, so blocks saved by one test
    and flow runs of another meet on the same server.
    """


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started OpenAI-compatible server on 127.0.0.1 with an empty reply queue."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def feishu_server() -> Iterator[FeishuBotServer]:
    """A Feishu-style custom bot on 127.0.0.1 that checks signatures."""
    with running_feishu_server(secret="server-secret") as server:
        yield server
