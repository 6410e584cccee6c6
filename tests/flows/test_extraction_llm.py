"""Tests for LLM extraction with the real litellm client against a local server."""

from __future__ import annotations

import datetime
import json
import logging

import pytest
from pydantic import SecretStr

from blocks.llm import LLMCredentials
from flows.tasks.extraction import (
    DelayNotice,
    build_delay_messages,
    extract_delay,
    extract_delay_notice,
)
from tests.servers.openai_server import OpenAIServer, ScriptedReply

TODAY = datetime.date(2024, 12, 1)
MESSAGE = " 受台风影响,A03-205芯片推迟3天发货"
MODEL = "openai/gpt-4o-mini"

# Differs from the rule parser's result in reason, supplier and dates, so a test
# can tell which analyzer produced a notice.
LLM_ANSWER = {
    "is_delay": True,
    "materials": ["A03-205"],
    "delay_days": 3,
    "reason": "台风过境",
    "supplier": "华强电子",
    "original_date": "2024-12-10",
    "new_date": "2024-12-13",
    "confidence": 0.93,
    "not_delay_reason": None,
}


def _llm(server: OpenAIServer, *, timeout: float = 10) -> LLMCredentials:
    return LLMCredentials(
        model=MODEL,
        api_base=server.base_url,
        api_key=SecretStr("sk-test-key"),
        timeout=timeout,
    )


def _assert_rules_result(notice: DelayNotice) -> None:
    assert notice.analyzer == "rules"
    assert notice.materials == ["A03-205"]
    assert notice.delay_days == 3
    assert notice.reason == "台风"
    assert notice.supplier is None


def test_extract_llm_valid_answer(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(ScriptedReply.text(json.dumps(LLM_ANSWER)))

    notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    assert notice.analyzer == f"llm:{MODEL}"
    assert notice.is_delay is True
    assert notice.materials == ["A03-205"]
    assert notice.delay_days == 3
    assert notice.reason == "台风过境"
    assert notice.supplier == "华强电子"
    assert notice.original_date == datetime.date(2024, 12, 10)
    assert notice.new_date == datetime.date(2024, 12, 13)
    assert notice.confidence == 0.93
    assert notice.not_delay_reason is None


def test_extract_llm_request_content(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(ScriptedReply.text(json.dumps(LLM_ANSWER)))

    extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    assert len(openai_server.requests) == 1
    request = openai_server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-key"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.body["temperature"] == 0.0
    messages = request.body["messages"]
    assert [message["role"] for message in messages] == ["system", "user"]
    prompt = messages[-1]["content"]
    assert MESSAGE.strip() in prompt
    assert "2024-12-01" in prompt
    assert '"not_delay_reason"' in prompt
    assert '"delay_lifted"' in prompt


def test_extract_llm_fenced_json(openai_server: OpenAIServer) -> None:
    fenced = "```json\n" + json.dumps(LLM_ANSWER, ensure_ascii=False) + "\n```"
    openai_server.enqueue(ScriptedReply.text(fenced))

    notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    assert notice.analyzer == f"llm:{MODEL}"
    assert notice.reason == "台风过境"


def test_extract_llm_not_delay_answer(openai_server: OpenAIServer) -> None:
    answer = {
        "is_delay": False,
        "materials": ["A03-205"],
        "confidence": 0.8,
        "not_delay_reason": "question",
    }
    openai_server.enqueue(ScriptedReply.text(json.dumps(answer)))

    notice = extract_delay("A03-205会延期吗?", _llm(openai_server), today=TODAY)

    assert notice.analyzer == f"llm:{MODEL}"
    assert notice.is_delay is False
    assert notice.not_delay_reason == "question"
    assert notice.delay_days is None


def test_extract_llm_invalid_json(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.enqueue(ScriptedReply.text("The part A03-205 is 3 days late."))

    with caplog.at_level(logging.WARNING, logger="flows.tasks.extraction"):
        notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    _assert_rules_result(notice)
    assert len(openai_server.requests) == 1
    assert "not valid JSON" in caplog.text
    assert MODEL in caplog.text


def test_extract_llm_timeout(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.enqueue(ScriptedReply.delayed(5, json.dumps(LLM_ANSWER)))

    with caplog.at_level(logging.WARNING, logger="flows.tasks.extraction"):
        notice = extract_delay(MESSAGE, _llm(openai_server, timeout=1), today=TODAY)

    _assert_rules_result(notice)
    assert len(openai_server.requests) == 1
    assert "timed out" in caplog.text


@pytest.mark.parametrize("status", [500, 503])
def test_extract_llm_server_error(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    openai_server.enqueue(ScriptedReply.error(status))

    with caplog.at_level(logging.WARNING, logger="flows.tasks.extraction"):
        notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    _assert_rules_result(notice)
    # num_retries=0: the fallback follows the first failure.
    assert len(openai_server.requests) == 1
    assert "unavailable" in caplog.text


def test_extract_llm_auth_error(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.enqueue(ScriptedReply.error(401))

    with caplog.at_level(logging.WARNING, logger="flows.tasks.extraction"):
        notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    _assert_rules_result(notice)
    assert "rejected the request (HTTP 401)" in caplog.text
    assert "sk-test-key" not in caplog.text


@pytest.mark.parametrize(
    ("change", "error_field"),
    [
        ({"confidence": 1.7}, "confidence"),
        ({"delay_days": "three"}, "delay_days"),
        ({"is_delay": "perhaps"}, "is_delay"),
        ({"not_delay_reason": "on_schedule"}, "not_delay_reason"),
        ({"new_date": "next Friday"}, "new_date"),
    ],
)
def test_extract_llm_schema_invalid(
    openai_server: OpenAIServer,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, object],
    error_field: str,
) -> None:
    openai_server.enqueue(ScriptedReply.text(json.dumps(LLM_ANSWER | change)))

    with caplog.at_level(logging.WARNING, logger="flows.tasks.extraction"):
        notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    _assert_rules_result(notice)
    assert "not a valid DelayNoticeFields" in caplog.text
    assert error_field in caplog.text


def test_extract_llm_missing_required_field(openai_server: OpenAIServer) -> None:
    answer = {key: value for key, value in LLM_ANSWER.items() if key != "is_delay"}
    openai_server.enqueue(ScriptedReply.text(json.dumps(answer)))

    notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    _assert_rules_result(notice)


def test_extract_llm_truncated_answer(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.enqueue(ScriptedReply.text('{"is_delay": tr', finish_reason="length"))

    with caplog.at_level(logging.WARNING, logger="flows.tasks.extraction"):
        notice = extract_delay(MESSAGE, _llm(openai_server), today=TODAY)

    _assert_rules_result(notice)
    assert "cut off at the token limit" in caplog.text


def test_extract_without_llm(openai_server: OpenAIServer) -> None:
    notice = extract_delay(MESSAGE, None, today=TODAY)

    _assert_rules_result(notice)
    assert openai_server.requests == []


def test_build_delay_messages_keeps_template_syntax() -> None:
    # The message is data: Jinja syntax inside it must reach the model unrendered.
    text = "A03-205推迟{{ 7 * 7 }}天 {% if true %}x{% endif %}"

    messages = build_delay_messages(text, today=TODAY)

    assert text in messages[-1]["content"]
    assert "49" not in messages[-1]["content"]


def test_extract_delay_notice_task_name() -> None:
    # NOTE: the task body is not run here, because Prefect's local server fails to
    # import with the locked FastAPI version, and get_run_logger needs a run.
    assert extract_delay_notice.name == "extract-delay-notice"
    assert extract_delay_notice.retries == 0
