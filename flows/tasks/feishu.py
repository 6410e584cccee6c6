"""Send text messages to a Feishu group through its custom bot webhook.

Feishu returns HTTP 200 with a ``code`` in the JSON body, also when it rejects a
message, so every response body is checked. Errors raised here:

    FeishuBotError              the bot rejected the message (``code``, ``msg``)
     ├── FeishuSignatureError   19021: signature or timestamp rejected
     ├── FeishuRateLimitError   11232: still rate limited after the last retry
     └── FeishuUnavailableError HTTP 5xx, timeout or network error after the last retry
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prefect import Task, get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from blocks.feishu import FeishuBotCredentials

__all__ = [
    "FeishuBotError",
    "FeishuRateLimitError",
    "FeishuRateLimiter",
    "FeishuRetryPolicy",
    "FeishuSignatureError",
    "FeishuUnavailableError",
    "get_rate_limiter",
    "notify_feishu_group",
    "send_feishu_text",
    "sign_feishu_bot",
]

logger = logging.getLogger(__name__)

SUCCESS_CODE = 0
SIGNATURE_REJECTED_CODE = 19021
RATE_LIMITED_CODE = 11232
# Feishu's published limits for one custom bot.
MAX_MESSAGES_PER_SECOND = 5
MAX_MESSAGES_PER_MINUTE = 100
# NOTE: Feishu limits a custom bot request body to about 20 KB. The exact byte
# count it enforces is unverified, so this checks 20,000 bytes.
MAX_BODY_BYTES = 20_000


class FeishuBotError(Exception):
    """The Feishu bot rejected a message or could not be reached.

    Attributes:
        code: Feishu's error code, or ``None`` for HTTP and network failures.
        msg: Feishu's error message, or a description of the failure.
        is_retryable: Whether sending the same message later may succeed.
    """

    is_retryable = False

    def __init__(self, message: str, *, code: int | None = None, msg: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.msg = msg


class FeishuSignatureError(FeishuBotError):
    """Feishu rejected the signature or the timestamp (code 19021)."""


class FeishuRateLimitError(FeishuBotError):
    """Feishu still returned code 11232 (rate limited) after the last retry."""

    is_retryable = True


class FeishuUnavailableError(FeishuBotError):
    """HTTP 5xx, a timeout or a network error remained after the last retry."""

    is_retryable = True


@dataclass(frozen=True)
class FeishuRetryPolicy:
    """Bounded exponential backoff with jitter for transient failures.

    Retries cover code 11232, HTTP 429 and 5xx, timeouts and network errors.
    The delay before retry ``n`` (1-based) is drawn from ``[d/2, d]`` with
    ``d = min(max_delay, base_delay * 2 ** (n - 1))`` seconds.
    """

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(
                f"max_attempts must be at least 1, got {self.max_attempts!r}"
            )
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(
                f"delays must not be negative, got base_delay={self.base_delay!r} "
                f"max_delay={self.max_delay!r}"
            )

    def delay(self, retry_number: int) -> float:
        """Return the seconds to wait before retry ``retry_number`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry_number - 1))
        return ceiling / 2 + self.random() * ceiling / 2


class FeishuRateLimiter:
    """Thread-safe sliding-window limiter that makes senders wait for a slot.

    Each ``acquire`` reserves the earliest time that keeps at most
    ``max_per_second`` messages in any 1 s window and ``max_per_minute`` in any
    60 s window, then sleeps until then. Reservations are handed out in call
    order, so waiting senders form a queue.

    Args:
        max_per_second: Messages allowed in any 1 second window.
        max_per_minute: Messages allowed in any 60 second window.
        clock: Monotonic clock in seconds; tests pass a fake one.
        sleep: Function that waits the given seconds; tests pass a fake one.
    """

    def __init__(
        self,
        max_per_second: int = MAX_MESSAGES_PER_SECOND,
        max_per_minute: int = MAX_MESSAGES_PER_MINUTE,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, value in (
            ("max_per_second", max_per_second),
            ("max_per_minute", max_per_minute),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._windows = ((max_per_second, 1.0), (max_per_minute, 60.0))
        self._longest_window = 60.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._reservations: deque[float] = deque()

    def acquire(self) -> float:
        """Wait for a free slot and return the seconds waited."""
        with self._lock:
            now = self._clock()
            while (
                self._reservations
                and self._reservations[0] <= now - self._longest_window
            ):
                self._reservations.popleft()

            slot = now
            if self._reservations:
                slot = max(slot, self._reservations[-1])
            for limit, window in self._windows:
                if len(self._reservations) >= limit:
                    # The limit-th newest reservation must leave the window first.
                    slot = max(slot, self._reservations[-limit] + window)
            self._reservations.append(slot)

        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait


_rate_limiters: dict[str, FeishuRateLimiter] = {}
_rate_limiters_lock = threading.Lock()


def get_rate_limiter(bot: FeishuBotCredentials) -> FeishuRateLimiter:
    """Return the process-wide limiter of one bot, created on first use."""
    key = hashlib.sha256(bot.webhook_url.get_secret_value().encode()).hexdigest()
    with _rate_limiters_lock:
        limiter = _rate_limiters.get(key)
        if limiter is None:
            limiter = _rate_limiters[key] = FeishuRateLimiter()
        return limiter


def sign_feishu_bot(timestamp: int, secret: str) -> str:
    """Compute the ``sign`` field of a custom bot message.

    Feishu keys HMAC-SHA256 with ``"{timestamp}\\n{secret}"`` and signs an empty
    message, then base64-encodes the digest.

    Args:
        timestamp: Unix time in seconds, sent as the ``timestamp`` field.
        secret: The bot's signing secret.

    Returns:
        The base64 signature.
    """
    key = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(key, b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def send_feishu_text(
    bot: FeishuBotCredentials,
    text: str,
    *,
    client: httpx.Client | None = None,
    rate_limiter: FeishuRateLimiter | None = None,
    retry_policy: FeishuRetryPolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Send a text message through a Feishu custom bot.

    Each attempt waits for the rate limiter and is signed with a fresh
    timestamp. Code 11232, HTTP 429 and 5xx, timeouts and network errors are
    retried within the bounds of ``retry_policy``. Other rejections raise at
    once.

    Args:
        bot: Webhook address and optional signing secret.
        text: Message text, not empty.
        client: HTTP client to use; by default one from ``bot.get_client()``,
            closed before returning.
        rate_limiter: Limiter to wait on; by default the process-wide one of
            this bot, see ``get_rate_limiter``.
        retry_policy: Retry bounds and delays; by default ``FeishuRetryPolicy()``.
        clock: Wall clock in seconds, for the signed timestamp.

    Returns:
        Feishu's response body, e.g. ``{"code": 0, "msg": "success", ...}``.

    Raises:
        ValueError: If ``text`` is empty or the message exceeds the size limit.
        FeishuSignatureError: If Feishu rejected the signature or timestamp.
        FeishuRateLimitError: If Feishu still rate limited the last attempt.
        FeishuUnavailableError: If the last attempt failed with HTTP 5xx, a
            timeout or a network error.
        FeishuBotError: If Feishu rejected the message with another code.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"text must be a non-empty string, got {text!r}: pass the message to send"
        )
    policy = retry_policy or FeishuRetryPolicy()
    limiter = rate_limiter or get_rate_limiter(bot)
    owns_client = client is None
    http = client if client is not None else bot.get_client()

    try:
        for attempt in range(1, policy.max_attempts + 1):
            limiter.acquire()
            payload = _build_payload(bot, text, int(clock()))
            try:
                return _post_once(http, bot, payload)
            except (FeishuRateLimitError, FeishuUnavailableError) as exc:
                if attempt == policy.max_attempts:
                    raise
                delay = policy.delay(attempt)
                logger.warning(
                    "Feishu bot attempt %d of %d failed (%s), retrying in %.2f s",
                    attempt,
                    policy.max_attempts,
                    exc,
                    delay,
                )
                policy.sleep(delay)
    finally:
        if owns_client:
            http.close()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _should_retry_notify(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Let Prefect retry only failures that may pass later, not bad config."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, FeishuBotError):
        return error.is_retryable
    return isinstance(error, httpx.TransportError)


@task(
    name="notify-feishu-group",
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=_should_retry_notify,
)
def notify_feishu_group(bot: FeishuBotCredentials, text: str) -> dict[str, Any]:
    """Post a text message to the bot's Feishu group as a Prefect task.

    ``send_feishu_text`` retries within the attempt. Prefect retries the task
    twice more after 30 s for rate limits and outages, but never for a rejected
    signature or another Feishu error code.

    Args:
        bot: The group's custom bot.
        text: Message text.

    Returns:
        Feishu's response body.
    """
    run_logger = get_run_logger()
    response = send_feishu_text(bot, text)
    run_logger.info("Sent a %d-character message to the Feishu group", len(text))
    return response


def _build_payload(
    bot: FeishuBotCredentials, text: str, timestamp: int
) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if bot.signing_secret is not None:
        secret = bot.signing_secret.get_secret_value()
        payload["timestamp"] = str(timestamp)
        payload["sign"] = sign_feishu_bot(timestamp, secret)
    payload["msg_type"] = "text"
    payload["content"] = {"text": text}

    size = len(json.dumps(payload, ensure_ascii=False).encode())
    if size > MAX_BODY_BYTES:
        raise ValueError(
            f"Feishu message body is {size} bytes, over the {MAX_BODY_BYTES}-byte "
            "limit: shorten the text or split it into several messages"
        )
    return payload


def _post_once(
    http: httpx.Client, bot: FeishuBotCredentials, payload: dict[str, Any]
) -> dict[str, Any]:
    """Send one request and translate the outcome into a body or an error."""
    try:
        response = http.post(bot.webhook_url.get_secret_value(), json=payload)
    except httpx.TimeoutException as exc:
        raise FeishuUnavailableError(
            f"Feishu bot request timed out: {exc}", msg=str(exc)
        ) from exc
    except httpx.NetworkError as exc:
        raise FeishuUnavailableError(
            f"Feishu bot request failed with a network error: {exc}", msg=str(exc)
        ) from exc

    if response.status_code >= 500:
        raise FeishuUnavailableError(
            f"Feishu bot returned HTTP {response.status_code}; "
            "the service is unavailable",
            msg=response.reason_phrase,
        )
    if response.status_code == 429:
        raise FeishuRateLimitError(
            "Feishu bot returned HTTP 429 Too Many Requests", msg="Too Many Requests"
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise FeishuBotError(
            f"Feishu bot returned HTTP {response.status_code} with a body that is "
            f"not JSON: {response.text[:200]!r}"
        ) from exc
    if not isinstance(body, dict):
        raise FeishuBotError(
            f"Feishu bot returned a JSON body that is not an object: {body!r}"
        )

    return _check_body(body, response.status_code)


def _check_body(body: dict[str, Any], status_code: int) -> dict[str, Any]:
    code = body.get("code", body.get("StatusCode"))
    msg = str(body.get("msg", body.get("StatusMessage", "")))
    if code == SUCCESS_CODE:
        return body
    if code == SIGNATURE_REJECTED_CODE:
        raise FeishuSignatureError(
            f"Feishu rejected the signature or timestamp (code {code}, msg {msg!r}): "
            "check that signing_secret matches the bot's signature verification "
            "setting and that this machine's clock is within 1 hour of real time",
            code=code,
            msg=msg,
        )
    if code == RATE_LIMITED_CODE:
        raise FeishuRateLimitError(
            f"Feishu rate limited the bot (code {code}, msg {msg!r})",
            code=code,
            msg=msg,
        )
    if code is None:
        raise FeishuBotError(
            f"Feishu bot returned HTTP {status_code} without a code: {body!r}"
        )
    raise FeishuBotError(
        f"Feishu bot rejected the message (code {code}, msg {msg!r}, "
        f"HTTP {status_code})",
        code=code if isinstance(code, int) else None,
        msg=msg,
    )
