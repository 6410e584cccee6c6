"""Tests of the ticket stores with the real `jira` client and real databases."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prefect import flow
from prefect.states import State

from blocks.jira import JiraCredentials
from flows.tasks.tickets import (
    JiraTicketStore,
    LocalTicketStore,
    Ticket,
    TicketAuthenticationError,
    TicketRejectedError,
    TicketServiceUnavailableError,
    TicketStore,
    ensure_ticket,
    open_ticket,
    quote_jql,
)
from tests.servers.jira_server import JiraServer

CREATE_PATH = "/rest/api/2/issue"
SEARCH_PATH = "/rest/api/2/search"


def make_credentials(server: JiraServer, **overrides: object) -> JiraCredentials:
    values: dict[str, object] = {
        "server_url": server.url,
        "username": server.username,
        "api_token": server.token,
        "project_key": "OPS",
        "timeout": 5,
        "is_cloud": False,
    }
    values.update(overrides)
    return JiraCredentials(**values)


@pytest.fixture
def store(jira_server: JiraServer) -> JiraTicketStore:
    return JiraTicketStore(make_credentials(jira_server))


@pytest.fixture
def local_store(engine: sa.Engine, table_prefix: str) -> Iterator[LocalTicketStore]:
    store = LocalTicketStore(engine, table_prefix=table_prefix)
    yield store
    store.drop_tables()


@flow(name="open-ticket-test")
def open_ticket_flow(store: TicketStore, label: str) -> Ticket:
    return open_ticket.with_options(retry_delay_seconds=0)(
        store,
        label=label,
        summary="Supplier delay for A03-205",
        description="Shipments of A03-205 move by 3 days.",
        labels=["supply-chain"],
        priority="High",
    )


def run_open_ticket(store: TicketStore, label: str) -> State:
    return open_ticket_flow(store, label, return_state=True)


def test_quote_jql_escapes() -> None:
    assert quote_jql('a"b') == '"a\\"b"'
    assert quote_jql("a\\b") == '"a\\\\b"'
    assert quote_jql("plain") == '"plain"'


def test_jira_create_sends_fields(
    store: JiraTicketStore, jira_server: JiraServer
) -> None:
    ticket = store.create(
        summary="Delay",
        description="Body",
        labels=["evt-1", "supply-chain"],
        assignee="jdoe",
        priority="High",
    )

    assert ticket.key == "OPS-1"
    assert ticket.url == f"{jira_server.url}/browse/OPS-1"
    assert ticket.created is True
    fields = jira_server.issues["OPS-1"]["fields"]
    assert fields["summary"] == "Delay"
    assert fields["description"] == "Body"
    assert fields["labels"] == ["evt-1", "supply-chain"]
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["priority"] == {"name": "High"}
    assert fields["assignee"] == {"name": "jdoe"}


def test_jira_find_by_label(store: JiraTicketStore, jira_server: JiraServer) -> None:
    store.create(
        summary="One", description="", labels=["evt-10"], assignee=None, priority=None
    )
    store.create(
        summary="Two", description="", labels=["evt-1"], assignee=None, priority=None
    )

    found = store.find_by_label("evt-1")

    assert found == Ticket(
        key="OPS-2", url=f"{jira_server.url}/browse/OPS-2", created=False
    )
    assert store.find_by_label("evt") is None
    jql = jira_server.requests_to("GET", SEARCH_PATH)[0].query["jql"][0]
    assert jql == 'project = "OPS" AND labels = "evt-1" ORDER BY created ASC'


def test_jira_find_label_with_quotes(store: JiraTicketStore) -> None:
    label = 'odd"label\\x'
    store.create(
        summary="S", description="", labels=[label], assignee=None, priority=None
    )

    found = store.find_by_label(label)

    assert found is not None
    assert found.key == "OPS-1"


def test_jira_construction_skips_server_info(
    store: JiraTicketStore, jira_server: JiraServer
) -> None:
    store.find_by_label("evt-1")

    paths = [request.path for request in jira_server.requests]
    assert "/rest/api/2/serverInfo" not in paths
    assert paths == ["/rest/api/2/field", SEARCH_PATH]


def test_jira_cloud_uses_search_jql() -> None:
    with JiraServer(deployment_type="Cloud") as server:
        store = JiraTicketStore(make_credentials(server, is_cloud=None))
        store.create(
            summary="S",
            description="",
            labels=["evt-1"],
            assignee="5b10ac8d82e05b22cc7d4ef5",
            priority=None,
        )
        found = store.find_by_label("evt-1")

        paths = [request.path for request in server.requests]
        assignee = server.issues["OPS-1"]["fields"]["assignee"]

    assert found is not None
    assert found.key == "OPS-1"
    assert paths[0] == "/rest/api/2/serverInfo"
    assert "/rest/api/2/search/jql" in paths
    assert SEARCH_PATH not in paths
    assert assignee == {"accountId": "5b10ac8d82e05b22cc7d4ef5"}


def test_ensure_ticket_twice_one_issue(
    store: JiraTicketStore, jira_server: JiraServer
) -> None:
    arguments = {
        "label": "evt-7",
        "summary": "Delay",
        "description": "Body",
        "labels": ["supply-chain"],
    }

    first = ensure_ticket(store, **arguments)
    second = ensure_ticket(store, **arguments)

    assert first.created is True
    assert second.created is False
    assert first.key == second.key
    assert list(jira_server.issues) == ["OPS-1"]
    assert jira_server.issues["OPS-1"]["fields"]["labels"] == ["evt-7", "supply-chain"]
    assert len(jira_server.requests_to("POST", CREATE_PATH)) == 1


@pytest.mark.parametrize(
    ("label", "summary", "message"),
    [
        ("evt 7", "Delay", "whitespace"),
        ("", "Delay", "empty"),
        ("evt-7", "", "one non-empty line"),
        ("evt-7", "two\nlines", "one non-empty line"),
        ("evt-7", "x" * 256, "maximum of 255"),
    ],
)
def test_ensure_ticket_invalid_input(
    store: JiraTicketStore,
    jira_server: JiraServer,
    label: str,
    summary: str,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        ensure_ticket(store, label=label, summary=summary, description="")

    assert jira_server.requests == []


def test_jira_400_carries_messages(
    store: JiraTicketStore, jira_server: JiraServer
) -> None:
    jira_server.fail_next(
        1,
        status=400,
        method="POST",
        path=CREATE_PATH,
        body={
            "errorMessages": ["Project OPS is archived."],
            "errors": {"customfield_10010": "Team is required."},
        },
    )

    with pytest.raises(TicketRejectedError) as caught:
        store.create(
            summary="S", description="", labels=[], assignee=None, priority=None
        )

    error = caught.value
    assert error.status_code == 400
    assert error.error_messages == ["Project OPS is archived."]
    assert error.field_errors == {"customfield_10010": "Team is required."}
    assert "Project OPS is archived." in str(error)
    assert "customfield_10010: Team is required." in str(error)


def test_jira_validation_error_from_server(store: JiraTicketStore) -> None:
    with pytest.raises(TicketRejectedError) as caught:
        store.create(
            summary="S", description="", labels=[], assignee=None, priority="Urgent!"
        )

    assert caught.value.status_code == 400
    assert list(caught.value.field_errors) == ["priority"]
    assert "The priority selected is invalid" in str(caught.value)


def test_jira_unknown_project_rejected(jira_server: JiraServer) -> None:
    store = JiraTicketStore(make_credentials(jira_server, project_key="NOPE"))

    with pytest.raises(TicketRejectedError, match="valid project is required"):
        store.create(
            summary="S", description="", labels=[], assignee=None, priority=None
        )


@pytest.mark.parametrize("status", [500, 503, 429])
def test_jira_5xx_unavailable(
    store: JiraTicketStore, jira_server: JiraServer, status: int
) -> None:
    jira_server.fail_next(1, status=status, path=SEARCH_PATH)

    with pytest.raises(TicketServiceUnavailableError, match=f"HTTP {status}"):
        store.find_by_label("evt-1")

    # max_retries=0: the jira client itself sent the search once.
    assert len(jira_server.requests_to("GET", SEARCH_PATH)) == 1


def test_jira_timeout_unavailable(jira_server: JiraServer) -> None:
    store = JiraTicketStore(make_credentials(jira_server, timeout=0.3))
    jira_server.hang_next(1, path=SEARCH_PATH)

    with pytest.raises(TicketServiceUnavailableError, match="timed out after 0.3 s"):
        store.find_by_label("evt-1")


def test_jira_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    credentials = JiraCredentials(
        server_url=f"http://127.0.0.1:{port}",
        username="bot",
        api_token="token",
        project_key="OPS",
        is_cloud=False,
    )

    with pytest.raises(TicketServiceUnavailableError, match="could not be reached"):
        JiraTicketStore(credentials).find_by_label("evt-1")


def test_jira_wrong_token(jira_server: JiraServer) -> None:
    store = JiraTicketStore(make_credentials(jira_server, api_token="wrong-token"))

    with pytest.raises(TicketAuthenticationError) as caught:
        store.find_by_label("evt-1")

    message = str(caught.value)
    assert caught.value.status_code == 401
    assert "'bot@example.com'" in message
    assert "Check username and api_token" in message
    assert "You are not authenticated" in message
    assert "wrong-token" not in message


def test_jira_wrong_token_at_server_info(jira_server: JiraServer) -> None:
    credentials = make_credentials(jira_server, api_token="wrong", is_cloud=None)

    with pytest.raises(TicketAuthenticationError, match="HTTP 401"):
        JiraTicketStore(credentials).find_by_label("evt-1")


def test_open_ticket_retries_500(
    prefect_harness: None, store: JiraTicketStore, jira_server: JiraServer
) -> None:
    jira_server.fail_next(1, status=500, method="POST", path=CREATE_PATH)

    state = run_open_ticket(store, "evt-20")

    ticket = state.result()
    assert ticket.key == "OPS-1"
    assert ticket.created is True
    assert list(jira_server.issues) == ["OPS-1"]
    assert len(jira_server.requests_to("POST", CREATE_PATH)) == 2


def test_open_ticket_lost_response_no_duplicate(
    prefect_harness: None, store: JiraTicketStore, jira_server: JiraServer
) -> None:
    # Jira creates the issue, but the client sees a 500 and the task retries.
    jira_server.fail_next(
        1, status=500, method="POST", path=CREATE_PATH, after_handling=True
    )

    state = run_open_ticket(store, "evt-21")

    ticket = state.result()
    assert ticket.key == "OPS-1"
    assert ticket.created is False
    assert list(jira_server.issues) == ["OPS-1"]
    assert len(jira_server.requests_to("POST", CREATE_PATH)) == 1


def test_open_ticket_retries_timeout(
    prefect_harness: None, jira_server: JiraServer
) -> None:
    store = JiraTicketStore(make_credentials(jira_server, timeout=0.3))
    jira_server.hang_next(1, path=SEARCH_PATH)

    state = run_open_ticket(store, "evt-22")

    assert state.result().key == "OPS-1"
    assert len(jira_server.requests_to("GET", SEARCH_PATH)) == 2


def test_open_ticket_gives_up_after_retries(
    prefect_harness: None, store: JiraTicketStore, jira_server: JiraServer
) -> None:
    jira_server.fail_next(10, status=503, path=SEARCH_PATH)

    state = run_open_ticket(store, "evt-23")

    assert state.is_failed()
    with pytest.raises(TicketServiceUnavailableError):
        state.result()
    # One run plus retries=3.
    assert len(jira_server.requests_to("GET", SEARCH_PATH)) == 4
    assert jira_server.issues == {}


def test_open_ticket_400_not_retried(
    prefect_harness: None, store: JiraTicketStore, jira_server: JiraServer
) -> None:
    jira_server.fail_next(
        5,
        status=400,
        method="POST",
        path=CREATE_PATH,
        body={"errorMessages": [], "errors": {"labels": "Label is too long."}},
    )

    state = run_open_ticket(store, "evt-24")

    assert state.is_failed()
    with pytest.raises(TicketRejectedError, match="labels: Label is too long."):
        state.result()
    assert len(jira_server.requests_to("POST", CREATE_PATH)) == 1


def test_open_ticket_wrong_token_not_retried(
    prefect_harness: None, jira_server: JiraServer
) -> None:
    store = JiraTicketStore(make_credentials(jira_server, api_token="wrong"))

    state = run_open_ticket(store, "evt-25")

    assert state.is_failed()
    with pytest.raises(TicketAuthenticationError):
        state.result()
    assert len(jira_server.requests) == 1


def test_local_store_keys(local_store: LocalTicketStore) -> None:
    first = local_store.create(
        summary="A", description="a", labels=["x"], assignee=None, priority=None
    )
    second = local_store.create(
        summary="B", description="b", labels=["y"], assignee="jdoe", priority="High"
    )

    assert first == Ticket(key="LOCAL-1", url=None, created=True)
    assert second == Ticket(key="LOCAL-2", url=None, created=True)


def test_local_store_label_exact(local_store: LocalTicketStore) -> None:
    local_store.create(
        summary="A", description="", labels=["evt-10"], assignee=None, priority=None
    )
    local_store.create(
        summary="B", description="", labels=["EVT-1"], assignee=None, priority=None
    )
    local_store.create(
        summary="C", description="", labels=["evt-1", "x"], assignee=None, priority=None
    )

    assert local_store.find_by_label("evt-1") == Ticket(
        key="LOCAL-3", url=None, created=False
    )
    assert local_store.find_by_label("EVT-1") == Ticket(
        key="LOCAL-2", url=None, created=False
    )
    assert local_store.find_by_label("evt") is None
    assert local_store.find_by_label("evt-%") is None
    assert local_store.find_by_label("evt-1 ") is None


def test_local_store_row_contents(
    local_store: LocalTicketStore, engine: sa.Engine
) -> None:
    ensure_ticket(
        local_store,
        label="evt-3",
        summary="Delay",
        description="Body text",
        labels=["supply-chain", "evt-3"],
        assignee="jdoe",
        priority="High",
    )

    with engine.connect() as connection:
        rows = connection.execute(sa.select(local_store.tickets)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["ticket_key"] == "LOCAL-1"
    assert row["summary"] == "Delay"
    assert row["description"] == "Body text"
    assert row["labels"] == ["evt-3", "supply-chain"]
    assert row["assignee"] == "jdoe"
    assert row["priority"] == "High"
    assert row["created_at"] is not None


def test_local_ensure_twice_one_row(
    local_store: LocalTicketStore, engine: sa.Engine, table_prefix: str
) -> None:
    first = ensure_ticket(local_store, label="evt-4", summary="S", description="")
    reopened = LocalTicketStore(engine, table_prefix=table_prefix)
    second = ensure_ticket(reopened, label="evt-4", summary="S", description="")

    with engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count()).select_from(local_store.tickets)
        ).scalar_one()
    assert first.created is True
    assert second == Ticket(key=first.key, url=None, created=False)
    assert count == 1


def test_open_ticket_local_store(
    prefect_harness: None, local_store: LocalTicketStore
) -> None:
    first = run_open_ticket(local_store, "evt-30").result()
    second = run_open_ticket(local_store, "evt-30").result()

    assert first == Ticket(key="LOCAL-1", url=None, created=True)
    assert second == Ticket(key="LOCAL-1", url=None, created=False)
