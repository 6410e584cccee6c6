"""The supply-chain delay flow end to end, from a signed DingTalk delivery.

Everything is real: the gateway process, the Prefect server, the served
deployment, MariaDB, and local servers that speak the Jira REST API, the TMS API,
OpenAI chat completions, SMTP and a DingTalk robot webhook. Approvals go through
Prefect's resume API with run input, as the UI's form does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run
from prefect.input.run_input import keyset_from_base_key

from blocks.chat_webhook import ChatWebhookCredentials
from blocks.database import MySQLCredentials
from blocks.jira import JiraCredentials
from blocks.llm import LLMCredentials
from blocks.smtp import SMTPCredentials
from blocks.tms import TMSCredentials
from flows.supply_chain_delay import notice_pause_key, ticket_label
from flows.tasks.report import TICKET_CREATED_EVENT, artifact_key
from flows.tasks.tickets import LocalTicketStore
from flows.tasks.tms import Shipment
from tests.servers.chat_webhook_server import ChatWebhookServer
from tests.servers.jira_server import JiraServer
from tests.servers.openai_server import OpenAIServer, ScriptedReply
from tests.servers.smtp_server import SMTPServer
from tests.servers.tms_server import TMSServer
from tests.support.dingtalk import dingtalk_headers, dingtalk_payload
from tests.support.processes import GatewayProcess, ServedFlowsProcess, wait_until

SECRET = "delay flow dingtalk secret"
RUN_TIMEOUT_SECONDS = 120
LLM_MODEL = "openai/test-model"
LLM_TIMEOUT_SECONDS = 3
BLOCKS = {
    "records": "e2e-delay-records",
    "llm": "e2e-delay-llm",
    "jira": "e2e-delay-jira",
    "tms": "e2e-delay-tms",
    "smtp": "e2e-delay-smtp",
    "webhook": "e2e-delay-webhook",
}

ROUTES_YAML = """
routes:
  supplier-full:
    scheme: dingtalk
    secrets:
      - env: E2E_DINGTALK_SECRET
    deployment: supply-chain-delay/supply-chain-delay
    event_id: "{{{{ body.msgId }}}}"
    parameters:
      event_id: "{{{{ event_id }}}}"
      route: "{{{{ route }}}}"
      text: "{{{{ body.text.content }}}}"
      sender: "{{{{ body.senderNick }}}}"
      conversation: "{{{{ body.conversationTitle }}}}"
      records_block: {records}
      llm_block: {llm}
      jira_block: {jira}
      tms_block: {tms}
      smtp_block: {smtp}
      notice_webhook_block: null
  supplier-embedded:
    scheme: dingtalk
    secrets:
      - env: E2E_DINGTALK_SECRET
    deployment: supply-chain-delay/supply-chain-delay
    event_id: "{{{{ body.msgId }}}}"
    parameters:
      event_id: "{{{{ event_id }}}}"
      route: "{{{{ route }}}}"
      text: "{{{{ body.text.content }}}}"
      records_block: {records}
      llm_block: null
      jira_block: null
      tms_block: null
      smtp_block: null
      notice_webhook_block: {webhook}
"""

TYPHOON_TEXT = " 受台风影响,A03-205芯片推迟3天发货"
LLM_EXTRACTION = {
    "is_delay": True,
    "materials": ["A03-205"],
    "delay_days": 3,
    "reason": "台风",
    "supplier": "华东芯片",
    "original_date": None,
    "new_date": None,
    "confidence": 0.92,
    "not_delay_reason": None,
}
LLM_DRAFT_SO1 = {
    "subject": "订单 SO-1 交付延迟",
    "body": "尊敬的客户 C-1：您的订单 SO-1 将延迟交付，新的预计交付日期见下。",
}


# Servers and blocks ------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    with (
        OpenAIServer() as llm,
        JiraServer() as jira,
        TMSServer() as tms,
        SMTPServer() as smtp,
        ChatWebhookServer() as webhook,
    ):
        yield {"llm": llm, "jira": jira, "tms": tms, "smtp": smtp, "webhook": webhook}


@pytest.fixture(scope="module")
def records_engine(mariadb_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mariadb_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def delay_blocks(
    prefect_server: Any, servers: dict[str, Any], mariadb_url: str
) -> dict[str, str]:
    url = sa.engine.make_url(mariadb_url)
    MySQLCredentials(
        host=url.host,
        port=url.port or 3306,
        username=url.username,
        database=url.database,
    ).save(BLOCKS["records"], overwrite=True)
    LLMCredentials(
        model=LLM_MODEL,
        api_base=servers["llm"].base_url,
        api_key="sk-test",
        timeout=LLM_TIMEOUT_SECONDS,
    ).save(BLOCKS["llm"], overwrite=True)
    jira: JiraServer = servers["jira"]
    JiraCredentials(
        server_url=jira.url,
        username=jira.username,
        api_token=jira.token,
        project_key="OPS",
        assignees={"A03": "buyer-a03", "Acme Chips": "buyer-acme"},
        default_assignee="buyer-default",
        is_cloud=False,
    ).save(BLOCKS["jira"], overwrite=True)
    TMSCredentials(base_url=servers["tms"].url, token=servers["tms"].token).save(
        BLOCKS["tms"], overwrite=True
    )
    smtp: SMTPServer = servers["smtp"]
    SMTPCredentials(
        host="127.0.0.1",
        port=smtp.port,
        username=smtp.username,
        password=smtp.password,
        from_address="Logistics <logistics@example.com>",
        starttls=False,
    ).save(BLOCKS["smtp"], overwrite=True)
    ChatWebhookCredentials(url=servers["webhook"].webhook_url).save(
        BLOCKS["webhook"], overwrite=True
    )
    return BLOCKS


@pytest.fixture(scope="module")
def gateway(
    served_flows: ServedFlowsProcess, session_home: Path, delay_blocks: dict[str, str]
) -> Iterator[GatewayProcess]:
    routes = session_home / "routes-delay-flow.yaml"
    routes.write_text(ROUTES_YAML.format(**delay_blocks), encoding="utf-8")
    process = GatewayProcess(
        "gateway-delay-flow",
        session_home,
        api_url=served_flows.api_url,
        routes_file=routes,
        E2E_DINGTALK_SECRET=SECRET,
    )
    process.start()
    yield process
    process.stop()


# Helpers -----------------------------------------------------------------------


def _deliver(gateway: GatewayProcess, route: str, content: str) -> tuple[str, str]:
    """Post a signed DingTalk message; return its msgId and the flow run id."""
    payload = dingtalk_payload(content)
    response = httpx.post(
        f"{gateway.url}/hooks/{route}",
        content=json.dumps(payload).encode(),
        headers=dingtalk_headers(SECRET),
        timeout=10,
    )
    assert response.status_code == 202, response.text
    inbox_id = response.json()["id"]

    def dispatched() -> str | None:
        event = httpx.get(f"{gateway.url}/events/{inbox_id}", timeout=5).json()
        return event.get("flow_run_id")

    flow_run_id = wait_until(dispatched, RUN_TIMEOUT_SECONDS, interval=0.3)
    return payload["msgId"], flow_run_id


def _flow_run(api_url: str, flow_run_id: str) -> dict[str, Any]:
    return httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=5).json()


def _wait_for_run(
    api_url: str, flow_run_id: str, reached: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the flow run until `reached(run)`; fail at once if it fails or crashes."""

    def check() -> dict[str, Any] | None:
        run = _flow_run(api_url, flow_run_id)
        if run["state_type"] in {"FAILED", "CRASHED", "CANCELLED"}:
            raise AssertionError(f"flow run ended {run['state_type']}: {run['state']}")
        return run if reached(run) else None

    return wait_until(check, RUN_TIMEOUT_SECONDS, interval=0.5)


def _is_completed(run: dict[str, Any]) -> bool:
    return run["state_type"] == "COMPLETED"


def _is_paused_at(pause_key: str) -> Callable[[dict[str, Any]], bool]:
    def reached(run: dict[str, Any]) -> bool:
        details = run["state"]["state_details"]
        return run["state_type"] == "PAUSED" and details.get("pause_key") == pause_key

    return reached


def _rows(engine: sa.Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        result = connection.execute(sa.text(sql), params)
        return [dict(row._mapping) for row in result]


def _notices(engine: sa.Engine, event_id: str) -> dict[str, dict[str, Any]]:
    rows = _rows(
        engine,
        "SELECT * FROM delay_customer_notices WHERE event_id = :id",
        id=event_id,
    )
    return {row["order_id"]: row for row in rows}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _shipment(number: int, locale: str, promised_in_days: int) -> Shipment:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Shipment(
        id=f"SHP-{number}",
        order_id=f"SO-{number}",
        material="A03-205",
        customer_id=f"C-{number}",
        customer_locale=locale,
        pickup_start=today + timedelta(days=1, hours=8),
        pickup_end=today + timedelta(days=1, hours=12),
        delivery_start=today + timedelta(days=3, hours=9),
        delivery_end=today + timedelta(days=3, hours=17),
        promised_date=date.today() + timedelta(days=promised_in_days),
    )


def _run_input_schema(flow_run_id: str, pause_key: str) -> dict[str, Any]:
    keyset = keyset_from_base_key(f"suspended-{pause_key}")
    with get_client(sync_client=True) as client:
        value = client.read_flow_run_input(
            flow_run_id=uuid.UUID(flow_run_id), key=keyset["schema"]
        )
    return json.loads(value)


def _latest_artifact(api_url: str, key: str) -> str:
    response = httpx.post(
        f"{api_url}/artifacts/latest/filter",
        json={"artifacts": {"key": {"any_": [key]}}},
        timeout=5,
    )
    artifacts = response.json()
    assert len(artifacts) == 1, artifacts
    return str(artifacts[0]["data"])


def _ticket_events(api_url: str, ticket_key: str) -> list[dict[str, Any]]:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = httpx.post(
        f"{api_url}/events/filter",
        json={
            "filter": {
                "occurred": {"since": since},
                "event": {"name": [TICKET_CREATED_EVENT]},
                "resource": {"id": [f"supply-chain.ticket.{ticket_key}"]},
            },
            "limit": 50,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["events"]


def _log_messages(api_url: str, flow_run_id: str) -> list[str]:
    response = httpx.post(
        f"{api_url}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
        timeout=10,
    )
    return [entry["message"] for entry in response.json()]


def _replay(api_url: str, flow_run_id: str) -> str:
    """Create a second run of the same deployment with the same parameters."""
    first = _flow_run(api_url, flow_run_id)
    with get_client(sync_client=True) as client:
        replay = client.create_flow_run_from_deployment(
            uuid.UUID(first["deployment_id"]), parameters=first["parameters"]
        )
    return str(replay.id)


# Tests -------------------------------------------------------------------------


def test_delay_approval_and_replay(
    gateway: GatewayProcess, servers: dict[str, Any], records_engine: sa.Engine
) -> None:
    llm: OpenAIServer = servers["llm"]
    jira: JiraServer = servers["jira"]
    tms: TMSServer = servers["tms"]
    smtp: SMTPServer = servers["smtp"]
    api_url = gateway.env["PREFECT_API_URL"]
    tms.add(_shipment(1, "zh-CN", promised_in_days=4))
    tms.add(_shipment(2, "en-US", promised_in_days=5))
    tms.add(_shipment(3, "en-US", promised_in_days=30))
    with records_engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS customer_contacts (customer_id VARCHAR(64) "
            "PRIMARY KEY, name VARCHAR(255), email VARCHAR(320))"
        )
        connection.exec_driver_sql(
            "INSERT INTO customer_contacts VALUES ('C-1', 'Customer One', "
            "'buyer@c1.example') ON DUPLICATE KEY UPDATE email = VALUES(email)"
        )
    llm.enqueue(
        ScriptedReply.text(json.dumps(LLM_EXTRACTION, ensure_ascii=False)),
        ScriptedReply.text(json.dumps(LLM_DRAFT_SO1, ensure_ascii=False)),
        ScriptedReply.text("Sure! Here is the notice: Dear customer..."),
    )

    event_id, flow_run_id = _deliver(gateway, "supplier-full", TYPHOON_TEXT)

    # First suspend: the notice for SO-1, after ticket, TMS and drafts.
    _wait_for_run(api_url, flow_run_id, _is_paused_at(notice_pause_key("SO-1")))
    issues = [
        issue
        for issue in jira.issues.values()
        if ticket_label(event_id) in issue["fields"]["labels"]
    ]
    assert len(issues) == 1
    fields = issues[0]["fields"]
    assert fields["assignee"] == {"name": "buyer-a03"}
    assert "A03-205" in fields["summary"]
    assert "华东芯片" in fields["summary"]
    assert TYPHOON_TEXT.strip() in fields["description"]
    assert "*Analyzer:* llm:openai/test-model" in fields["description"]
    ticket_key = issues[0]["key"]

    updates = {
        row["shipment_id"]: row
        for row in _rows(
            records_engine,
            "SELECT * FROM delay_shipment_updates WHERE event_id = :id",
            id=event_id,
        )
    }
    assert sorted(updates) == ["SHP-1", "SHP-2", "SHP-3"]
    assert [bool(updates[name]["promise_missed"]) for name in sorted(updates)] == [
        True,
        True,
        False,
    ]
    assert all(row["tms"] == "http" for row in updates.values())
    moved = datetime.fromisoformat(tms.shipments["SHP-1"]["delivery_end"])
    original = _shipment(1, "zh-CN", 4).delivery_end
    assert moved - original == timedelta(days=3)
    assert len(tms.replies) == 3

    notices = _notices(records_engine, event_id)
    assert sorted(notices) == ["SO-1", "SO-2"]
    assert notices["SO-1"]["status"] == "draft"
    assert notices["SO-1"]["drafted_by"] == f"llm:{LLM_MODEL}"
    assert notices["SO-1"]["language"] == "zh"
    assert notices["SO-1"]["subject"] == LLM_DRAFT_SO1["subject"]
    assert notices["SO-2"]["drafted_by"] == "template"
    assert notices["SO-2"]["language"] == "en"
    assert "order SO-2" in notices["SO-2"]["draft_text"]
    schema = _run_input_schema(flow_run_id, notice_pause_key("SO-1"))
    assert schema["properties"]["text"]["default"] == notices["SO-1"]["draft_text"]
    assert "approve" in json.dumps(schema["properties"]["action"])

    report = _latest_artifact(api_url, artifact_key(event_id))
    assert ticket_key in report
    assert "awaiting approval of the notice for order SO-1" in report
    events = wait_until(lambda: _ticket_events(api_url, ticket_key), 30)
    assert len(events) == 1
    assert events[0]["payload"]["event_id"] == event_id

    # Edit and send SO-1; the run suspends again for SO-2.
    resume_flow_run(
        uuid.UUID(flow_run_id),
        run_input={
            "action": "edit",
            "text": "SO-1 arrives 3 days late.",
            "comment": "",
        },
    )
    _wait_for_run(api_url, flow_run_id, _is_paused_at(notice_pause_key("SO-2")))
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail.recipients == ["buyer@c1.example"]
    assert mail.message["Subject"] == LLM_DRAFT_SO1["subject"]
    assert mail.text.strip() == "SO-1 arrives 3 days late."
    sent = _notices(records_engine, event_id)["SO-1"]
    assert sent["status"] == "sent"
    assert sent["decision"] == "edit"
    assert sent["sent_text"] == "SO-1 arrives 3 days late."
    assert sent["recipient"] == "buyer@c1.example"
    assert sent["delivery_id"] == mail.message["Message-ID"]

    # Reject SO-2: nothing is sent, the decision is recorded.
    resume_flow_run(
        uuid.UUID(flow_run_id),
        run_input={"action": "reject", "text": "", "comment": "call them instead"},
    )
    _wait_for_run(api_url, flow_run_id, _is_completed)
    assert len(smtp.messages) == 1
    rejected = _notices(records_engine, event_id)["SO-2"]
    assert rejected["status"] == "rejected"
    assert rejected["decision"] == "reject"
    assert rejected["comment"] == "call them instead"
    assert rejected["sent_text"] is None
    # Three executions, three LLM calls: the resumed ones reused the cached result.
    assert len(llm.requests) == 3
    record = _rows(
        records_engine, "SELECT * FROM delay_records WHERE event_id = :id", id=event_id
    )[0]
    assert record["analyzer"] == f"llm:{LLM_MODEL}"
    assert record["ticket_key"] == ticket_key
    final_report = _latest_artifact(api_url, artifact_key(event_id))
    assert "| SO-1 | C-1 | zh |" in final_report
    assert "| sent | email |" in final_report
    assert "| rejected |" in final_report

    # A replay of the event in a new flow run repeats nothing.
    llm.enqueue(ScriptedReply.text(json.dumps(LLM_EXTRACTION, ensure_ascii=False)))
    replay_id = _replay(api_url, flow_run_id)
    _wait_for_run(api_url, replay_id, _is_completed)
    labelled = [
        issue
        for issue in jira.issues.values()
        if ticket_label(event_id) in issue["fields"]["labels"]
    ]
    assert [issue["key"] for issue in labelled] == [ticket_key]
    assert len(tms.replies) == 3
    assert datetime.fromisoformat(tms.shipments["SHP-1"]["delivery_end"]) == moved
    assert len(smtp.messages) == 1
    statuses = {
        key: row["status"] for key, row in _notices(records_engine, event_id).items()
    }
    assert statuses == {"SO-1": "sent", "SO-2": "rejected"}
    assert len(_ticket_events(api_url, ticket_key)) == 1


def test_embedded_defaults_chat_webhook(
    gateway: GatewayProcess, servers: dict[str, Any], records_engine: sa.Engine
) -> None:
    webhook: ChatWebhookServer = servers["webhook"]
    api_url = gateway.env["PREFECT_API_URL"]

    event_id, flow_run_id = _deliver(
        gateway, "supplier-embedded", "受台风影响,A03-207芯片推迟3天发货"
    )

    pause_key = notice_pause_key("DEMO-SO-1004")
    _wait_for_run(api_url, flow_run_id, _is_paused_at(pause_key))
    tickets = _rows(
        records_engine,
        "SELECT t.ticket_key FROM local_tickets t JOIN local_ticket_labels l "
        "ON l.ticket_id = t.id WHERE l.label = :label",
        label=ticket_label(event_id),
    )
    assert len(tickets) == 1
    updates = _rows(
        records_engine,
        "SELECT * FROM delay_shipment_updates WHERE event_id = :id",
        id=event_id,
    )
    assert [row["shipment_id"] for row in updates] == ["DEMO-SHP-1004"]
    assert updates[0]["tms"] == "database"
    draft = _notices(records_engine, event_id)["DEMO-SO-1004"]
    assert draft["drafted_by"] == "template"
    # The run ships its logs in batches, so they may arrive after the suspend.
    messages = wait_until(
        lambda: [
            message
            for message in _log_messages(api_url, flow_run_id)
            if message.startswith("embedded default:")
        ],
        30,
    )
    assert any("embedded default: TMS: the shipments table" in m for m in messages)
    assert any("embedded default: tickets: local ticket tables" in m for m in messages)
    assert any("embedded default: LLM: none" in m for m in messages)

    resume_flow_run(
        uuid.UUID(flow_run_id),
        run_input={"action": "approve", "text": draft["draft_text"], "comment": "ok"},
    )
    _wait_for_run(api_url, flow_run_id, _is_completed)
    posted = webhook.messages()
    assert len(posted) == 1
    assert posted[0]["msgtype"] == "text"
    assert "DEMO-SO-1004" in posted[0]["text"]["content"]
    sent = _notices(records_engine, event_id)["DEMO-SO-1004"]
    assert sent["status"] == "sent"
    assert sent["channel"] == "chat-webhook"
    assert sent["decision"] == "approve"
    record = _rows(
        records_engine, "SELECT * FROM delay_records WHERE event_id = :id", id=event_id
    )[0]
    assert record["analyzer"] == "rules"
    assert record["ticket_key"] == tickets[0]["ticket_key"]


def test_not_a_delay_no_ticket(
    gateway: GatewayProcess, records_engine: sa.Engine
) -> None:
    api_url = gateway.env["PREFECT_API_URL"]

    event_id, flow_run_id = _deliver(
        gateway, "supplier-embedded", "明天下午三点开会讨论新品报价"
    )

    run = _wait_for_run(api_url, flow_run_id, _is_completed)
    assert run["state_name"] == "Not a delay"
    record = _rows(
        records_engine, "SELECT * FROM delay_records WHERE event_id = :id", id=event_id
    )[0]
    assert not record["is_delay"]
    assert record["ticket_key"] is None
    assert (
        LocalTicketStore(records_engine).find_by_label(ticket_label(event_id)) is None
    )
    assert "Not a delay" in _latest_artifact(api_url, artifact_key(event_id))


LLM_CASES = {
    "valid": (
        ScriptedReply.text(
            json.dumps(
                {
                    **LLM_EXTRACTION,
                    "materials": ["Z42-900"],
                    "delay_days": 2,
                    "reason": "疫情",
                    "supplier": "Acme Chips",
                    "confidence": 0.97,
                }
            )
        ),
        f"llm:{LLM_MODEL}",
    ),
    "invalid-json": (ScriptedReply.text('{"is_delay": true, "materials": ['), "rules"),
    "timeout": (ScriptedReply.delayed(LLM_TIMEOUT_SECONDS + 5), "rules"),
}


@pytest.mark.parametrize("case", list(LLM_CASES))
def test_llm_answer_or_rules(
    case: str,
    gateway: GatewayProcess,
    servers: dict[str, Any],
    records_engine: sa.Engine,
) -> None:
    llm: OpenAIServer = servers["llm"]
    jira: JiraServer = servers["jira"]
    reply, analyzer = LLM_CASES[case]
    requests_before = len(llm.requests)
    llm.enqueue(reply)

    event_id, flow_run_id = _deliver(
        gateway, "supplier-full", "受疫情影响,Z42-900芯片推迟2天发货"
    )

    _wait_for_run(gateway.env["PREFECT_API_URL"], flow_run_id, _is_completed)
    assert len(llm.requests) == requests_before + 1
    assert llm.requests[-1].body["model"] == "test-model"
    record = _rows(
        records_engine, "SELECT * FROM delay_records WHERE event_id = :id", id=event_id
    )[0]
    assert record["analyzer"] == analyzer
    assert _json(record["materials"]) == ["Z42-900"]
    assert record["delay_days"] == 2
    issue = next(
        issue
        for issue in jira.issues.values()
        if ticket_label(event_id) in issue["fields"]["labels"]
    )
    if case == "valid":
        assert record["supplier"] == "Acme Chips"
        assert issue["fields"]["assignee"] == {"name": "buyer-acme"}
    else:
        assert record["supplier"] is None
        assert issue["fields"]["assignee"] == {"name": "buyer-default"}
    # No shipments carry Z42-900, so nothing moved and no notice waits.
    assert _notices(records_engine, event_id) == {}
