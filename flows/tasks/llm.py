"""Structured completions: ask an LLM for a JSON object and validate it with pydantic.

Errors raised here:

    LLMError
    ├── LLMUnavailableError  timeout, connection failure, rate limit, HTTP 5xx
    ├── LLMRequestError      the provider rejected the request (HTTP 4xx other than 429)
    └── LLMResponseError     empty or truncated content, invalid JSON, schema failure

Callers that have a fallback catch `LLMError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from blocks.llm import LLMCredentials

__all__ = [
    "LLMError",
    "LLMRequestError",
    "LLMResponseError",
    "LLMUnavailableError",
    "complete_structured",
    "parse_json_object",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# Maximum characters of invalid response content quoted in an error message.
MAX_QUOTED_CHARS = 200

_FENCED_BLOCK = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


class LLMError(Exception):
    """Base class for failed LLM calls."""


class LLMUnavailableError(LLMError):
    """The LLM could not be reached or did not respond in time. Retrying may help."""


class LLMRequestError(LLMError):
    """The provider rejected the request, for example a wrong key or model name."""


class LLMResponseError(LLMError):
    """The LLM responded, but the content is not valid for the response model."""


def complete_structured(
    llm: LLMCredentials,
    messages: list[dict[str, Any]],
    response_model: type[M],
) -> M:
    """Request a JSON object from the LLM and validate it against `response_model`.

    The request sets JSON mode (`response_format={"type": "json_object"}`) and
    disables litellm's retries, so a caller with a fallback gets the error at once.

    Args:
        llm: Model, endpoint and limits.
        messages: Chat messages in the OpenAI format.
        response_model: Pydantic model that the JSON object must satisfy.

    Returns:
        The validated response model instance.

    Raises:
        LLMUnavailableError: The request timed out, the connection failed, the
            provider is rate limiting, or it responded with HTTP 5xx.
        LLMRequestError: The provider rejected the request with another HTTP 4xx.
        LLMResponseError: The response content is empty, truncated, not a JSON
            object, or fails validation.
    """
    # The cost map is otherwise downloaded from GitHub on import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    import openai

    logger.debug("Requesting a %s from model %r", response_model.__name__, llm.model)
    try:
        response = litellm.completion(
            messages=messages,
            response_format={"type": "json_object"},
            num_retries=0,
            max_retries=0,
            **llm.completion_kwargs(),
        )
    except litellm.Timeout as exc:
        raise LLMUnavailableError(
            f"Request to model {llm.model!r} timed out after {llm.timeout} s. "
            "Raise the block's timeout if the model is slow."
        ) from exc
    except (
        litellm.APIConnectionError,
        litellm.RateLimitError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    ) as exc:
        raise LLMUnavailableError(
            f"Model {llm.model!r} at {llm.api_base!r} is unavailable: {exc}"
        ) from exc
    except openai.APIError as exc:
        # litellm's other exceptions (authentication, bad request, not found, ...)
        # subclass the openai ones.
        status_code = getattr(exc, "status_code", None)
        if isinstance(status_code, int) and status_code >= 500:
            raise LLMUnavailableError(
                f"Model {llm.model!r} failed with HTTP {status_code}: {exc}"
            ) from exc
        raise LLMRequestError(
            f"Model {llm.model!r} rejected the request (HTTP {status_code}): {exc}. "
            "Check the block's model name, api_base and api_key."
        ) from exc

    choice = response.choices[0]
    content = choice.message.content
    if choice.finish_reason == "length":
        raise LLMResponseError(
            f"Response of model {llm.model!r} was cut off at the token limit "
            f"(max_tokens={llm.max_tokens!r}). Raise max_tokens in the block."
        )
    if not content:
        raise LLMResponseError(
            f"Model {llm.model!r} returned empty content "
            f"(finish_reason={choice.finish_reason!r})."
        )

    data = parse_json_object(content)
    try:
        return response_model.model_validate(data)
    except ValidationError as exc:
        raise LLMResponseError(
            f"Response of model {llm.model!r} is not a valid "
            f"{response_model.__name__}: {exc.error_count()} errors: "
            f"{_summarize_errors(exc)}"
        ) from exc


def parse_json_object(content: str) -> dict[str, Any]:
    """Parse LLM response content as one JSON object.

    The object may be wrapped in a Markdown code fence (```json ... ```), which
    models often add even in JSON mode.

    Raises:
        LLMResponseError: The text is not JSON, or the JSON is not an object.
    """
    fenced = _FENCED_BLOCK.search(content)
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LLMResponseError(
            f"Response content is not valid JSON ({exc.msg} at position {exc.pos}): "
            f"{content[:MAX_QUOTED_CHARS]!r}"
        ) from exc
    if not isinstance(data, dict):
        raise LLMResponseError(
            f"Response content is JSON of type {type(data).__name__}, expected an "
            "object: "
            f"{content[:MAX_QUOTED_CHARS]!r}"
        )
    return data


def _summarize_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(item) for item in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)
