"""Tests of the Jira credentials block."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from blocks.jira import JiraCredentials
from tests.servers.jira_server import JiraServer


def make_credentials(
    server_url: str = "http://127.0.0.1:1", **overrides: object
) -> JiraCredentials:
    values: dict[str, object] = {
        "server_url": server_url,
        "username": "bot@example.com",
        "api_token": "jira-test-token",
        "project_key": "OPS",
    }
    values.update(overrides)
    return JiraCredentials(**values)


@pytest.fixture
def routed() -> JiraCredentials:
    return make_credentials(
        assignees={
            "A03": "team-a03",
            "A03-2": "team-a03-2",
            "B": "team-b",
            "Acme Metals": "acme-owner",
        },
        default_assignee="dispatcher",
    )


@pytest.mark.parametrize(
    ("materials", "supplier", "expected"),
    [
        (["A03-205"], None, "team-a03-2"),
        (["A03-105"], None, "team-a03"),
        (["C01-1", "A03-205"], None, "team-a03-2"),
        (["A03-105", "A03-205"], "Acme Metals", "team-a03-2"),
        (["C01-1"], "Acme Metals", "acme-owner"),
        (["C01-1"], "Acme", "dispatcher"),
        ([], None, "dispatcher"),
        (["b11"], None, "dispatcher"),
    ],
)
def test_assignee_for(
    routed: JiraCredentials,
    materials: list[str],
    supplier: str | None,
    expected: str,
) -> None:
    assert routed.assignee_for(materials, supplier) == expected


def test_assignee_for_no_default() -> None:
    credentials = make_credentials(assignees={"A03": "team-a03"})

    assert credentials.assignee_for(["Z9"], None) is None


def test_jira_token_is_secret() -> None:
    credentials = make_credentials()

    assert isinstance(credentials.api_token, SecretStr)
    assert "jira-test-token" not in repr(credentials)
    assert credentials.issue_type == "Task"
    assert credentials.timeout == 10


def test_jira_fields_have_descriptions() -> None:
    for name, field in JiraCredentials.model_fields.items():
        assert field.description, f"{name} has no description"
        assert field.description.endswith("."), f"{name} description lacks a period"


def test_jira_code_example() -> None:
    example = JiraCredentials.get_code_example()

    assert example is not None
    assert "from blocks.jira import JiraCredentials" in example
    assert 'JiraCredentials.load("BLOCK_NAME")' in example


def test_get_client_without_server_info(jira_server: JiraServer) -> None:
    client = make_credentials(jira_server.url, is_cloud=True).get_client()

    assert jira_server.requests == []
    assert client.deploymentType == "Cloud"
    assert client.myself()["name"] == "bot@example.com"
    assert jira_server.requests[0].path == "/rest/api/2/myself"


def test_get_client_asks_server_info(jira_server: JiraServer) -> None:
    client = make_credentials(jira_server.url).get_client()

    assert [request.path for request in jira_server.requests] == [
        "/rest/api/2/serverInfo"
    ]
    assert client.deploymentType == "Server"


def test_get_client_sends_basic_auth(jira_server: JiraServer) -> None:
    make_credentials(jira_server.url).get_client()

    header = jira_server.requests[0].headers["authorization"]
    # base64 of "bot@example.com:jira-test-token"
    assert header == "Basic Ym90QGV4YW1wbGUuY29tOmppcmEtdGVzdC10b2tlbg=="
