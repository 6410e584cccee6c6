"""Prefect block with the connection settings for an LLM reached through litellm."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class LLMCredentials(Block):
    """Model name, endpoint and limits for calls through `litellm.completion`.

    Attributes:
        model: litellm model name, with the provider prefix.
        api_base: Base URL of the API, or None for the provider's default.
        api_key: API key, or None when the endpoint needs none.
        timeout: Maximum time in seconds for one request.
        temperature: Sampling temperature.
        max_tokens: Maximum number of tokens in the completion, or None for the
            provider's default.

    Examples:
        Load a stored block and pass its settings to litellm:
        ```python
        from blocks.llm import LLMCredentials

        llm = LLMCredentials.load("supplier-chat-llm")
        litellm.completion(messages=messages, **llm.completion_kwargs())
        ```
    """

    _block_type_name = "LLM Credentials"
    _description = (
        "Model name, endpoint, API key and limits for an LLM called via litellm."
    )

    model: str = Field(
        description=(
            "litellm model name with the provider prefix, for example "
            "'openai/gpt-4o-mini'. An OpenAI-compatible server takes the prefix "
            "'openai/' together with api_base."
        ),
    )
    api_base: str | None = Field(
        default=None,
        description=(
            "Base URL of the API, for example 'http://127.0.0.1:8000/v1'. "
            "Leave empty to use the provider's default URL."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "API key sent to the provider. Leave empty if the endpoint needs none."
        ),
    )
    timeout: float = Field(
        default=30,
        gt=0,
        description="Maximum time in seconds for one completion request.",
    )
    temperature: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Sampling temperature. 0 makes the answers as repeatable as the model "
            "allows."
        ),
    )
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Maximum number of tokens in the completion. Leave empty for the "
            "provider's default."
        ),
    )

    def completion_kwargs(self) -> dict[str, Any]:
        """Build the keyword arguments for `litellm.completion` from the fields.

        Fields that are None are left out, so litellm applies its own defaults.
        The returned dict contains the API key in plain text: never log it.
        """
        kwargs: dict[str, Any] = {
            "model": self.model,
            "timeout": self.timeout,
            "temperature": self.temperature,
        }
        if self.api_base is not None:
            kwargs["api_base"] = self.api_base
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        return kwargs
