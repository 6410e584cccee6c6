"""Tests for the LLM credentials block."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from blocks.llm import LLMCredentials


def test_completion_kwargs_full() -> None:
    llm = LLMCredentials(
        model="openai/gpt-4o-mini",
        api_base="http://127.0.0.1:9/v1",
        api_key=SecretStr("sk-test"),
        timeout=12.5,
        temperature=0.2,
        max_tokens=300,
    )

    assert llm.completion_kwargs() == {
        "model": "openai/gpt-4o-mini",
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "sk-test",
        "timeout": 12.5,
        "temperature": 0.2,
        "max_tokens": 300,
    }


def test_completion_kwargs_defaults() -> None:
    llm = LLMCredentials(model="openai/gpt-4o-mini")

    assert llm.completion_kwargs() == {
        "model": "openai/gpt-4o-mini",
        "timeout": 30,
        "temperature": 0.0,
    }


def test_llm_credentials_hides_key() -> None:
    llm = LLMCredentials(model="openai/gpt-4o-mini", api_key=SecretStr("sk-test"))

    assert "sk-test" not in repr(llm)
    assert "sk-test" not in str(llm.model_dump())


@pytest.mark.parametrize(
    "field", [{"timeout": 0}, {"temperature": -1}, {"max_tokens": 0}]
)
def test_llm_credentials_invalid(field: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        LLMCredentials(model="openai/gpt-4o-mini", **field)


def test_llm_credentials_block_type() -> None:
    assert LLMCredentials.get_block_type_name() == "LLM Credentials"
    schema = LLMCredentials.model_json_schema()
    for name in (
        "model",
        "api_base",
        "api_key",
        "timeout",
        "temperature",
        "max_tokens",
    ):
        assert schema["properties"][name]["description"]
