"""Signed feedback deliveries through the real gateway into `customer-feedback`.

Real components only: the Prefect server and served flows of the session, a
gateway process, MariaDB for the records, and local servers on 127.0.0.1 that
speak the Jira REST, Feishu custom bot and OpenAI chat completions protocols.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.servers.feishu_server import FeishuBotServer, running_feishu_server
from tests.servers.jira_server import JiraServer
from tests.servers.openai_server import OpenAIServer, ScriptedReply
from tests.support.processes import GatewayProcess, ServedFlowsProcess, wait_until
from webhook_gateway.verification.hmac import HmacVerifier

LOG_WAIT_SECONDS = 60

HMAC_SECRET = "e2e feedback hmac secret"
FEISHU_SECRET = "e2e feishu signing secret"
LLM_MODEL = "openai/feedback-test-model"
RUN_TIMEOUT_SECONDS = 180

RECORDS_BLOCK = "e2e-feedback-records"
JIRA_BLOCK = "e2e-feedback-jira"
FEISHU_BLOCK = "e2e-feedback-feishu"
WRONG_SECRET_FEISHU_BLOCK = "e2e-feedback-feishu-wrong-secret"
LLM_BLOCK = "e2e-feedback-llm"
MISSING_BLOCK = "e2e-feedback-no-such-block"

EMAIL = "zhang.wei@example.com"
MASKED_EMAIL = "z***@example.com"
PHONE = "13812345678"
MASKED_PHONE = "138****5678"

POSITIVE_TEXT = "耳机音质很好，续航也长，物流第二天就到了，非常满意！"
NEGATIVE_TEXT = "收到的耳机右边没有声音，联系客服三天没人回复，要求退款！"
NEUTRAL_TEXT = "请问这款耳机支持蓝牙5.3吗？"

ROUTE_TEMPLATE = """
  {name}:
    scheme: hmac
    secrets:
      - env: E2E_FEEDBACK_SECRET
    options:
      header: x-signature
      prefix: "sha256="
    deployment: customer-feedback/customer-feedback
    event_id: "{{{{ body.feedback_id }}}}"
    parameters:
      feedback: "{{{{ body }}}}"
      route: "{{{{ route }}}}"
      llm_block: {llm}
      ticket_block: {jira}
      feishu_block: {feishu}
      records_block: {records}
{extra}"""

ROUTES = {
    "feedback-offline": {"llm": MISSING_BLOCK, "feishu": FEISHU_BLOCK},
    "feedback-llm": {"llm": LLM_BLOCK, "feishu": FEISHU_BLOCK},
    "feedback-llm-urgent": {
        "llm": LLM_BLOCK,
        "feishu": FEISHU_BLOCK,
        "extra": "      rules:\n        notify_negative_urgent: true\n",
    },
    "feedback-wrong-bot": {"llm": MISSING_BLOCK, "feishu": WRONG_SECRET_FEISHU_BLOCK},
    "feedback-defaults": {
        "llm": MISSING_BLOCK,
        "jira": MISSING_BLOCK,
        "feishu": MISSING_BLOCK,
        "records": MISSING_BLOCK,
        "extra": "      rules:\n        notify_negative_urgent: true\n",
    },
}


def _routes_yaml() -> str:
    parts = ["routes:"]
    for name, blocks in ROUTES.items():
        parts.append(
            ROUTE_TEMPLATE.format(
                name=name,
                llm=blocks["llm"],
                jira=blocks.get("jira", JIRA_BLOCK),
                feishu=blocks["feishu"],
                records=blocks.get("records", RECORDS_BLOCK),
                extra=blocks.get("extra", ""),
            )
        )
    return "".join(parts)


@pytest.fixture(scope="module")
def feishu_server() -> Iterator[FeishuBotServer]:
    with running_feishu_server(secret=FEISHU_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def jira_server() -> Iterator[JiraServer]:
    with JiraServer() as server:
        yield server


@pytest.fixture(scope="module")
def llm_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def feedback_blocks(
    served_flows: ServedFlowsProcess,
    mariadb_url: str,
    feishu_server: FeishuBotServer,
    jira_server: JiraServer,
    llm_server: OpenAIServer,
) -> None:
    """Save the blocks that the routes name on the session's Prefect server."""
    from blocks.database import MySQLCredentials
    from blocks.feishu import FeishuBotCredentials
    from blocks.jira import JiraCredentials
    from blocks.llm import LLMCredentials

    url = sa.engine.make_url(mariadb_url)
    with temporary_settings(updates={PREFECT_API_URL: served_flows.api_url}):
        MySQLCredentials(
            host=url.host,
            port=url.port or 3306,
            username=url.username,
            database=url.database,
        ).save(RECORDS_BLOCK, overwrite=True)
        JiraCredentials(
            server_url=jira_server.url,
            username=jira_server.username,
            api_token=jira_server.token,
            project_key="OPS",
            timeout=10,
            is_cloud=False,
        ).save(JIRA_BLOCK, overwrite=True)
        FeishuBotCredentials(
            webhook_url=feishu_server.url, signing_secret=FEISHU_SECRET
        ).save(FEISHU_BLOCK, overwrite=True)
        FeishuBotCredentials(
            webhook_url=feishu_server.url, signing_secret="not the bot's secret"
        ).save(WRONG_SECRET_FEISHU_BLOCK, overwrite=True)
        LLMCredentials(
            model=LLM_MODEL, api_base=llm_server.base_url, api_key="sk-test", timeout=20
        ).save(LLM_BLOCK, overwrite=True)


@pytest.fixture(scope="module")
def gateway(
    served_flows: ServedFlowsProcess, session_home: Path, feedback_blocks: None
) -> Iterator[GatewayProcess]:
    routes_file = session_home / "routes-feedback.yaml"
    routes_file.write_text(_routes_yaml(), encoding="utf-8")
    process = GatewayProcess(
        "gateway-feedback",
        session_home,
        api_url=served_flows.api_url,
        routes_file=routes_file,
        E2E_FEEDBACK_SECRET=HMAC_SECRET,
    )
    process.start()
    yield process
    process.stop()


def _submission(text: str, contact: str = EMAIL) -> dict[str, Any]:
    return {
        "feedback_id": f"fb-{uuid.uuid4().hex[:12]}",
        "text": text,
        "user_id": "u-10086",
        "contact": contact,
        "product": "SKU-2049 无线耳机",
        "page": "/products/sku-2049",
        "locale": "zh-CN",
        "submitted_at": "2026-05-04T10:15:00+08:00",
    }


def _llm_answer(sentiment: str, urgency: str, summary: str) -> ScriptedReply:
    answer = {
        "sentiment": sentiment,
        "score": {"positive": 0.8, "negative": -0.8, "neutral": 0.0}[sentiment],
        "summary": summary,
        "topics": ["Quality", "service"],
        "urgency": urgency,
    }
    return ScriptedReply.text(json.dumps(answer, ensure_ascii=False))


def _deliver(gateway: GatewayProcess, route: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, ensure_ascii=False).encode()
    signed = HmacVerifier([HMAC_SECRET], header="x-signature", prefix="sha256=").sign(
        body
    )
    response = httpx.post(
        f"{gateway.url}/hooks/{route}",
        content=signed.body,
        headers=signed.headers,
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == payload["feedback_id"]
    return str(response.json()["id"])


def _wait_for_event(gateway: GatewayProcess, id: str, status: str) -> dict[str, Any]:
    final = {"completed", "failed", "crashed", "dead", "rejected", "cancelled"}

    def reached() -> dict[str, Any] | None:
        event = httpx.get(f"{gateway.url}/events/{id}", timeout=5).json()
        if event["status"] in final - {status}:
            raise AssertionError(
                f"event ended {event['status']}, not {status}: {event}"
            )
        return event if event["status"] == status else None

    return wait_until(reached, RUN_TIMEOUT_SECONDS, interval=0.5)


def _feedback_row(mariadb_url: str, event_id: str) -> dict[str, Any]:
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT * FROM customer_feedback WHERE event_id = :id"),
                {"id": event_id},
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    row = dict(rows[0]._mapping)
    if isinstance(row["topics"], str):
        row["topics"] = json.loads(row["topics"])
    return row


def _issues_for(jira_server: JiraServer, event_id: str) -> list[dict[str, Any]]:
    label = f"webhook-{event_id}"
    return [
        issue
        for issue in jira_server.issues.values()
        if label in issue["fields"]["labels"]
    ]


def _feishu_texts_for(feishu_server: FeishuBotServer, event_id: str) -> list[str]:
    return [text for text in feishu_server.delivered_texts if event_id in text]


def _run_logs(api_url: str, flow_run_id: str) -> list[str]:
    """Return a finished run's log messages, once the engine's last line arrived.

    The run's process ships its logs in batches and may send the last ones after
    the run is already Completed, so the test waits for the closing line.
    """

    def read_logs() -> list[str] | None:
        response = httpx.post(
            f"{api_url}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
            timeout=10,
        )
        response.raise_for_status()
        messages = [entry["message"] for entry in response.json()]
        if any("Finished in state" in message for message in messages):
            return messages
        return None

    return wait_until(read_logs, LOG_WAIT_SECONDS, interval=0.5)


def _run_artifacts(api_url: str, flow_run_id: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{api_url}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json())


def _flow_run(api_url: str, flow_run_id: str) -> dict[str, Any]:
    return httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=5).json()


def test_negative_opens_jira_ticket(
    gateway: GatewayProcess,
    jira_server: JiraServer,
    llm_server: OpenAIServer,
    feishu_server: FeishuBotServer,
    mariadb_url: str,
) -> None:
    payload = _submission(NEGATIVE_TEXT, contact=PHONE)
    llm_server.enqueue(
        _llm_answer("negative", "high", "右耳机无声且客服不回复，要求退款。")
    )

    event = _wait_for_event(
        gateway, _deliver(gateway, "feedback-llm", payload), "completed"
    )

    event_id = payload["feedback_id"]
    issues = _issues_for(jira_server, event_id)
    assert len(issues) == 1
    fields = issues[0]["fields"]
    assert fields["priority"] == {"name": "High"}
    assert "customer-feedback" in fields["labels"]
    assert "右耳机无声" in fields["summary"]
    assert PHONE not in fields["description"]
    assert MASKED_PHONE in fields["description"]
    assert _feishu_texts_for(feishu_server, event_id) == []
    row = _feedback_row(mariadb_url, event_id)
    assert row["sentiment"] == "negative"
    assert row["urgency"] == "high"
    assert row["analyzer"] == f"llm:{LLM_MODEL}"
    assert row["summary"] == "右耳机无声且客服不回复，要求退款。"
    assert row["topics"] == ["quality", "service"]
    assert row["ticket_key"] == issues[0]["key"]
    assert row["notification_status"] == "not_required"
    assert row["contact"] == PHONE
    assert row["text"] == NEGATIVE_TEXT
    assert row["route"] == "feedback-llm"

    api_url = gateway.env["PREFECT_API_URL"]
    logs = _run_logs(api_url, event["flow_run_id"])
    assert any(MASKED_PHONE in message for message in logs)
    assert not [message for message in logs if PHONE in message]
    artifacts = _run_artifacts(api_url, event["flow_run_id"])
    assert len(artifacts) == 1
    markdown = artifacts[0]["data"]
    assert MASKED_PHONE in markdown
    assert PHONE not in markdown
    assert issues[0]["key"] in markdown


def test_positive_posts_to_feishu(
    gateway: GatewayProcess,
    jira_server: JiraServer,
    feishu_server: FeishuBotServer,
    mariadb_url: str,
) -> None:
    payload = _submission(POSITIVE_TEXT)

    event = _wait_for_event(
        gateway, _deliver(gateway, "feedback-offline", payload), "completed"
    )

    event_id = payload["feedback_id"]
    texts = _feishu_texts_for(feishu_server, event_id)
    assert len(texts) == 1
    assert "SKU-2049" in texts[0]
    assert EMAIL not in texts[0]
    assert _issues_for(jira_server, event_id) == []
    row = _feedback_row(mariadb_url, event_id)
    assert row["sentiment"] == "positive"
    assert row["analyzer"] == "offline:snownlp"
    assert row["notification_status"] == "delivered"
    assert row["notification_code"] is None
    assert row["ticket_key"] is None
    assert row["contact"] == EMAIL

    api_url = gateway.env["PREFECT_API_URL"]
    logs = _run_logs(api_url, event["flow_run_id"])
    assert logs
    assert not [message for message in logs if EMAIL in message]
    markdown = _run_artifacts(api_url, event["flow_run_id"])[0]["data"]
    assert MASKED_EMAIL in markdown
    assert EMAIL not in markdown


def test_neutral_stored_only(
    gateway: GatewayProcess,
    jira_server: JiraServer,
    feishu_server: FeishuBotServer,
    mariadb_url: str,
) -> None:
    payload = _submission(NEUTRAL_TEXT)

    _wait_for_event(
        gateway, _deliver(gateway, "feedback-offline", payload), "completed"
    )

    event_id = payload["feedback_id"]
    assert _issues_for(jira_server, event_id) == []
    assert _feishu_texts_for(feishu_server, event_id) == []
    row = _feedback_row(mariadb_url, event_id)
    assert row["sentiment"] == "neutral"
    assert row["notification_status"] == "not_required"
    assert row["ticket_key"] is None


def test_llm_failure_uses_offline_analyzer(
    gateway: GatewayProcess,
    jira_server: JiraServer,
    llm_server: OpenAIServer,
    mariadb_url: str,
) -> None:
    payload = _submission(NEGATIVE_TEXT)
    requests_before = len(llm_server.requests)
    llm_server.enqueue(ScriptedReply.error(500))

    _wait_for_event(gateway, _deliver(gateway, "feedback-llm", payload), "completed")

    assert len(llm_server.requests) == requests_before + 1
    row = _feedback_row(mariadb_url, payload["feedback_id"])
    assert row["analyzer"] == "offline:snownlp"
    assert row["sentiment"] == "negative"
    issues = _issues_for(jira_server, payload["feedback_id"])
    assert len(issues) == 1
    # The offline analyzer rates a refund demand as high urgency.
    assert issues[0]["fields"]["priority"] == {"name": "High"}


def test_feishu_signature_rejected_recorded(
    gateway: GatewayProcess, feishu_server: FeishuBotServer, mariadb_url: str
) -> None:
    payload = _submission(POSITIVE_TEXT)

    event = _wait_for_event(
        gateway, _deliver(gateway, "feedback-wrong-bot", payload), "failed"
    )

    event_id = payload["feedback_id"]
    assert _feishu_texts_for(feishu_server, event_id) == []
    rejected = [
        request
        for request in feishu_server.requests
        if request.body and event_id in request.body["content"]["text"]
    ]
    assert [request.response_code for request in rejected] == [19021]
    row = _feedback_row(mariadb_url, event_id)
    assert row["sentiment"] == "positive"
    assert row["notification_status"] == "failed"
    assert row["notification_code"] == 19021
    flow_run = _flow_run(gateway.env["PREFECT_API_URL"], event["flow_run_id"])
    assert flow_run["state_type"] == "FAILED"
    assert "19021" in flow_run["state"]["message"]


def test_feishu_rate_limit_then_delivered(
    gateway: GatewayProcess, feishu_server: FeishuBotServer, mariadb_url: str
) -> None:
    payload = _submission(POSITIVE_TEXT)
    feishu_server.rate_limit_next(1)

    _wait_for_event(
        gateway, _deliver(gateway, "feedback-offline", payload), "completed"
    )

    event_id = payload["feedback_id"]
    attempts = [
        request.response_code
        for request in feishu_server.requests
        if request.body and event_id in request.body["content"]["text"]
    ]
    assert attempts == [11232, 0]
    row = _feedback_row(mariadb_url, event_id)
    assert row["notification_status"] == "delivered"
    assert row["notification_code"] is None


def test_same_event_twice_one_ticket_one_message(
    gateway: GatewayProcess,
    jira_server: JiraServer,
    feishu_server: FeishuBotServer,
    llm_server: OpenAIServer,
    mariadb_url: str,
) -> None:
    payload = _submission(NEGATIVE_TEXT)
    for _ in range(2):
        llm_server.enqueue(_llm_answer("negative", "high", "右耳机无声，要求退款。"))
    api_url = gateway.env["PREFECT_API_URL"]

    first = _wait_for_event(
        gateway, _deliver(gateway, "feedback-llm-urgent", payload), "completed"
    )
    # Run the deployment again with the first run's parameters, as an operator
    # does when retrying a run; the gateway itself never runs an event twice.
    first_run = _flow_run(api_url, first["flow_run_id"])
    response = httpx.post(
        f"{api_url}/deployments/{first_run['deployment_id']}/create_flow_run",
        json={"parameters": first_run["parameters"]},
        timeout=10,
    )
    response.raise_for_status()
    second_id = response.json()["id"]

    def second_finished() -> dict[str, Any] | None:
        run = _flow_run(api_url, second_id)
        return run if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED"} else None

    second = wait_until(second_finished, RUN_TIMEOUT_SECONDS, interval=0.5)

    assert second["state_type"] == "COMPLETED"
    event_id = payload["feedback_id"]
    issues = _issues_for(jira_server, event_id)
    assert len(issues) == 1
    assert len(_feishu_texts_for(feishu_server, event_id)) == 1
    row = _feedback_row(mariadb_url, event_id)
    assert row["ticket_key"] == issues[0]["key"]
    assert row["notification_status"] == "delivered"
    assert row["analyzer"] == f"llm:{LLM_MODEL}"


def test_embedded_defaults_local_ticket_and_outbox(
    gateway: GatewayProcess, flows_records_url: str
) -> None:
    payload = _submission(NEGATIVE_TEXT)

    event = _wait_for_event(
        gateway, _deliver(gateway, "feedback-defaults", payload), "completed"
    )

    event_id = payload["feedback_id"]
    engine = sa.create_engine(flows_records_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT * FROM customer_feedback WHERE event_id = :id"),
                {"id": event_id},
            ).one()
            outbox = connection.execute(
                sa.text("SELECT text FROM feishu_outbox WHERE event_id = :id"),
                {"id": event_id},
            ).all()
            tickets = connection.execute(
                sa.text(
                    "SELECT t.ticket_key, t.priority FROM local_tickets t "
                    "JOIN local_ticket_labels l ON l.ticket_id = t.id "
                    "WHERE l.label = :label"
                ),
                {"label": f"webhook-{event_id}"},
            ).all()
    finally:
        engine.dispose()
    assert row.analyzer == "offline:snownlp"
    assert row.notification_status == "outbox"
    assert len(outbox) == 1
    assert "SKU-2049" in outbox[0].text
    assert len(tickets) == 1
    assert tickets[0].priority == "High"
    assert row.ticket_key == tickets[0].ticket_key
    markdown = _run_artifacts(gateway.env["PREFECT_API_URL"], event["flow_run_id"])[0][
        "data"
    ]
    assert "Embedded defaults in use" in markdown
    assert "feishu_outbox" in markdown
    assert "local ticket table" in markdown
