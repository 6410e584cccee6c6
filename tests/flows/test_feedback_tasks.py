"""Feedback payload, contact masking, routing rules, LLM analysis and storage."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prefect import flow
from prefect.settings import PREFECT_API_URL
from pydantic import ValidationError

from blocks.llm import LLMCredentials
from flows.tasks.feedback import (
    FeedbackSubmission,
    InvalidFeedbackError,
    LLMFeedbackAnswer,
    RoutingRules,
    analyze_feedback,
    mask_contact,
    parse_submission,
)
from flows.tasks.feedback_records import (
    queue_outbox_message,
    read_feedback_record,
    record_feedback_outcome,
    store_feedback_record,
)
from flows.tasks.sentiment import FeedbackAnalysis
from flows.tasks.storage import RecordsDatabase
from tests.servers.openai_server import OpenAIServer, ScriptedReply
from tests.support.processes import wait_until

NEGATIVE_TEXT = "收到的耳机右边没有声音，联系客服三天没人回复，要求退款！"


@pytest.mark.parametrize(
    ("contact", "masked"),
    [
        ("alice@example.com", "a***@example.com"),
        ("13812345678", "138****5678"),
        ("138 1234 5678", "138****5678"),
        ("+86 138-1234-5678", "+861******5678"),
        ("1234567", "*******"),
        ("wechat:alice_88", "w***"),
    ],
)
def test_mask_contact(contact: str, masked: str) -> None:
    assert mask_contact(contact) == masked


def test_submission_hides_contact() -> None:
    submission = FeedbackSubmission(
        feedback_id="fb-1", text="很好", contact="alice@example.com"
    )

    assert "alice@example.com" not in repr(submission)
    assert "alice@example.com" not in str(submission.model_dump())
    assert submission.contact_value == "alice@example.com"
    assert submission.masked_contact == "a***@example.com"


def test_submission_blank_contact_is_none() -> None:
    submission = FeedbackSubmission(feedback_id="fb-1", text="很好", contact="  ")

    assert submission.contact is None
    assert submission.masked_contact is None


def test_submission_rejects_empty_text() -> None:
    with pytest.raises(ValidationError, match="text"):
        FeedbackSubmission(feedback_id="fb-1", text="   ")


def test_submission_parses_documented_example() -> None:
    submission = FeedbackSubmission.model_validate(
        {
            "feedback_id": "fb-20260504-0001",
            "text": "耳机音质很好",
            "user_id": "u-10086",
            "contact": "13812345678",
            "product": "SKU-2049",
            "page": "/products/sku-2049",
            "locale": "zh-CN",
            "submitted_at": "2026-05-04T10:15:00+08:00",
            "extra_field": "ignored",
        }
    )

    assert submission.submitted_at == datetime(2026, 5, 4, 2, 15, tzinfo=UTC)
    assert submission.subject == "SKU-2049"


def test_parse_invalid_hides_contact() -> None:
    payload = {"feedback_id": "fb-9", "contact": "alice@example.com", "locale": 5}

    with pytest.raises(InvalidFeedbackError) as caught:
        parse_submission(payload)

    message = str(caught.value)
    assert "alice@example.com" not in message
    assert "text: Field required" in message
    assert "locale: Input should be a valid string" in message
    assert "'fb-9'" in message
    assert caught.value.__cause__ is None


def test_flow_invalid_payload_logs_no_contact(prefect_harness: None) -> None:
    from flows.feedback_analysis import customer_feedback

    payload = {"feedback_id": "fb-invalid", "contact": "13812345678"}

    state = customer_feedback(feedback=payload, return_state=True)

    assert state.is_failed()
    flow_run_id = str(state.state_details.flow_run_id)

    def read_logs() -> list[str]:
        response = httpx.post(
            f"{PREFECT_API_URL.value()}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}},
            timeout=10,
        )
        messages = [entry["message"] for entry in response.json()]
        return messages if any("InvalidFeedbackError" in m for m in messages) else []

    messages = wait_until(read_logs, 60, message="no error log for the flow run")
    assert not [message for message in messages if "13812345678" in message]
    assert "text: Field required" in (state.message or "")


def test_rules_default_actions() -> None:
    rules = RoutingRules()

    assert rules.actions_for("negative", "high") == ["ticket"]
    assert rules.actions_for("positive", "low") == ["feishu"]
    assert rules.actions_for("neutral", "normal") == []


def test_rules_notify_negative_urgent() -> None:
    rules = RoutingRules(notify_negative_urgent=True)

    assert rules.actions_for("negative", "high") == ["ticket", "feishu"]
    assert rules.actions_for("negative", "normal") == ["ticket"]


def test_rules_no_duplicate_actions() -> None:
    rules = RoutingRules(negative=["ticket", "feishu"], notify_negative_urgent=True)

    assert rules.actions_for("negative", "high") == ["ticket", "feishu"]


def test_rules_priority_for_urgency() -> None:
    rules = RoutingRules()

    assert rules.priority_for("high") == "High"
    assert rules.priority_for("normal") == "Medium"
    assert rules.priority_for("low") == "Low"


def test_rules_reject_unknown_action() -> None:
    with pytest.raises(ValidationError, match="negative"):
        RoutingRules.model_validate({"negative": ["email"]})


def test_llm_answer_cleans_fields() -> None:
    answer = LLMFeedbackAnswer(
        sentiment="negative",
        score=-0.7,
        summary="  Right earbud\nis silent. ",
        topics=["Quality", "quality", " After  Sales ", ""],
        urgency="high",
    )

    assert answer.summary == "Right earbud is silent."
    assert answer.topics == ["quality", "after sales"]


def _llm(server: OpenAIServer) -> LLMCredentials:
    return LLMCredentials(
        model="openai/test-model",
        api_base=server.base_url,
        api_key="sk-test",
        timeout=10,
    )


def test_analyze_with_llm_answer(openai_server: OpenAIServer) -> None:
    answer = {
        "sentiment": "negative",
        "score": -0.9,
        "summary": "右耳机无声，要求退款。",
        "topics": ["quality"],
        "urgency": "high",
    }
    openai_server.enqueue(ScriptedReply.text(json.dumps(answer, ensure_ascii=False)))

    analysis = analyze_feedback(NEGATIVE_TEXT, "zh-CN", _llm(openai_server))

    assert analysis.analyzer == "llm:openai/test-model"
    assert analysis.sentiment == "negative"
    assert analysis.summary == "右耳机无声，要求退款。"
    prompt = openai_server.requests[0].body["messages"][-1]["content"]
    assert NEGATIVE_TEXT in prompt
    assert "zh-CN" in prompt


@pytest.mark.parametrize(
    "reply",
    [
        ScriptedReply.error(500),
        ScriptedReply.text("not json at all"),
        ScriptedReply.text('{"sentiment": "angry", "summary": "x", "urgency": "high"}'),
    ],
    ids=["http-500", "not-json", "invalid-sentiment"],
)
def test_analyze_llm_failure_falls_back(
    openai_server: OpenAIServer, reply: ScriptedReply, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.enqueue(reply)

    with caplog.at_level(logging.WARNING, logger="flows.tasks.feedback"):
        analysis = analyze_feedback(NEGATIVE_TEXT, "zh-CN", _llm(openai_server))

    assert len(openai_server.requests) == 1
    assert analysis.analyzer == "offline:snownlp"
    assert analysis.sentiment == "negative"
    assert "using the offline analyzer" in caplog.text


def test_analyze_without_llm_offline() -> None:
    analysis = analyze_feedback("The blender is fantastic, love it!", "en-US", None)

    assert analysis.analyzer == "offline:vader"
    assert analysis.sentiment == "positive"


def _analysis(sentiment: str = "negative") -> FeedbackAnalysis:
    return FeedbackAnalysis(
        sentiment=sentiment,
        score=-0.6,
        summary="右耳机无声",
        topics=["quality"],
        urgency="high",
        analyzer="offline:snownlp",
    )


@flow(name="feedback-storage-test")
def _store_twice(database: RecordsDatabase, submission: FeedbackSubmission) -> None:
    store_feedback_record(
        database,
        submission=submission,
        analysis=_analysis(),
        route="r",
        notification_status="pending",
    )
    record_feedback_outcome(
        database,
        submission.feedback_id,
        ticket_key="OPS-1",
        ticket_url=None,
        notification_status="delivered",
    )
    # A rerun stores the analysis again but keeps the recorded outcome.
    store_feedback_record(
        database,
        submission=submission,
        analysis=_analysis(),
        route="r",
        notification_status="pending",
    )


@flow(name="feedback-outbox-test")
def _queue_twice(database: RecordsDatabase, event_id: str) -> list[bool]:
    return [queue_outbox_message(database, event_id, "消息") for _ in range(2)]


@pytest.fixture(params=["sqlite", "mariadb"])
def records_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[sa.Engine]:
    """A SQLite file, then the session's fresh MariaDB database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def test_store_rerun_keeps_outcome(
    prefect_harness: None, records_engine: sa.Engine
) -> None:
    engine = records_engine
    database = RecordsDatabase(engine, "test database", is_default=False)
    submission = FeedbackSubmission(
        feedback_id=f"fb-store-{uuid.uuid4().hex[:12]}",
        text=NEGATIVE_TEXT,
        contact="13812345678",
        submitted_at="2026-05-04T10:15:00+08:00",
    )

    _store_twice(database, submission)

    row = read_feedback_record(database, submission.feedback_id)
    assert row is not None
    assert row["notification_status"] == "delivered"
    assert row["ticket_key"] == "OPS-1"
    assert row["contact"] == "13812345678"
    assert row["sentiment"] == "negative"
    assert row["submitted_at"].replace(tzinfo=None) == datetime(2026, 5, 4, 2, 15)


def test_outbox_once_per_event(
    prefect_harness: None, records_engine: sa.Engine
) -> None:
    engine = records_engine
    database = RecordsDatabase(engine, "test database", is_default=False)
    event_id = f"fb-outbox-{uuid.uuid4().hex[:12]}"

    added = _queue_twice(database, event_id)

    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT COUNT(*) FROM feishu_outbox WHERE event_id = :id"),
            {"id": event_id},
        ).scalar()
    assert added == [True, False]
    assert count == 1
