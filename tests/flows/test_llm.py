"""Tests for structured completions through litellm against a local server."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, SecretStr

from blocks.llm import LLMCredentials
from flows.tasks.llm import (
    LLMError,
    LLMRequestError,
    LLMResponseError,
    LLMUnavailableError,
    complete_structured,
    parse_json_object,
)
from tests.servers.openai_server import OpenAIServer, ScriptedReply

MESSAGES = [{"role": "user", "content": "Rate this feedback: 'great support'"}]


class Sentiment(BaseModel):
    label: str
    score: float


def _llm(server: OpenAIServer) -> LLMCredentials:
    return LLMCredentials(
        model="openai/test-model",
        api_base=server.base_url,
        api_key=SecretStr("sk-secret-value"),
        timeout=10,
        max_tokens=64,
    )


def test_complete_structured_valid(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(ScriptedReply.text('{"label": "positive", "score": 0.9}'))

    result = complete_structured(_llm(openai_server), MESSAGES, Sentiment)

    assert result == Sentiment(label="positive", score=0.9)
    body = openai_server.requests[0].body
    assert body["model"] == "test-model"
    assert body["messages"] == MESSAGES
    assert body["max_tokens"] == 64
    assert body["response_format"] == {"type": "json_object"}


def test_complete_structured_fence_with_text(openai_server: OpenAIServer) -> None:
    content = 'Here it is:\n```json\n{"label": "neutral", "score": 0.5}\n```\n'
    openai_server.enqueue(ScriptedReply.text(content))

    result = complete_structured(_llm(openai_server), MESSAGES, Sentiment)

    assert result.label == "neutral"


def test_complete_structured_json_array(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(ScriptedReply.text("[1, 2]"))

    with pytest.raises(LLMResponseError, match="expected an object"):
        complete_structured(_llm(openai_server), MESSAGES, Sentiment)


def test_complete_structured_schema_error(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(ScriptedReply.text(json.dumps({"label": "positive"})))

    with pytest.raises(LLMResponseError, match="score: Field required") as info:
        complete_structured(_llm(openai_server), MESSAGES, Sentiment)

    assert "not a valid Sentiment" in str(info.value)


def test_complete_structured_empty_content(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(ScriptedReply.text(""))

    with pytest.raises(LLMResponseError, match="empty content"):
        complete_structured(_llm(openai_server), MESSAGES, Sentiment)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_complete_structured_unavailable(
    openai_server: OpenAIServer, status: int
) -> None:
    openai_server.enqueue(ScriptedReply.error(status))

    with pytest.raises(LLMUnavailableError) as info:
        complete_structured(_llm(openai_server), MESSAGES, Sentiment)

    assert info.value.__cause__ is not None
    assert "sk-secret-value" not in str(info.value)
    assert len(openai_server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 404])
def test_complete_structured_rejected(openai_server: OpenAIServer, status: int) -> None:
    openai_server.enqueue(ScriptedReply.error(status))

    with pytest.raises(LLMRequestError, match=f"HTTP {status}") as info:
        complete_structured(_llm(openai_server), MESSAGES, Sentiment)

    assert "sk-secret-value" not in str(info.value)


def test_complete_structured_connection_refused() -> None:
    with OpenAIServer() as server:
        llm = _llm(server)
    # The server is stopped, so its port refuses connections.

    with pytest.raises(LLMUnavailableError, match="unavailable"):
        complete_structured(llm, MESSAGES, Sentiment)


def test_llm_errors_share_base() -> None:
    for error_class in (LLMUnavailableError, LLMRequestError, LLMResponseError):
        assert issubclass(error_class, LLMError)


@pytest.mark.parametrize(
    "content",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Answer:\n```JSON\n{"a": 1}```',
    ],
)
def test_parse_json_object_forms(content: str) -> None:
    assert parse_json_object(content) == {"a": 1}


def test_parse_json_object_invalid() -> None:
    with pytest.raises(LLMResponseError, match="not valid JSON"):
        parse_json_object('{"a": 1')
