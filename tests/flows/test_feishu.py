"""Tests for the Feishu custom bot tasks, against a local Feishu-style server."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prefect.logging import disable_run_logger
from prefect.states import Failed

from blocks.feishu import FeishuBotCredentials
from flows.tasks.feishu import (
    FeishuBotError,
    FeishuRateLimiter,
    FeishuRateLimitError,
    FeishuRetryPolicy,
    FeishuSignatureError,
    FeishuUnavailableError,
    _should_retry_notify,
    get_rate_limiter,
    notify_feishu_group,
    send_feishu_text,
    sign_feishu_bot,
)
from tests.servers.feishu_server import FeishuBotServer, running_feishu_server


class FakeClock:
    """Thread-safe clock whose sleep advances time instantly."""

    def __init__(self, start: float = 1000.0, *, advance_on_sleep: bool = True) -> None:
        self.now = start
        self.advance_on_sleep = advance_on_sleep
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds


def make_bot(server: FeishuBotServer, secret: str | None) -> FeishuBotCredentials:
    return FeishuBotCredentials(webhook_url=server.url, signing_secret=secret)


def fast_policy(sleeps: list[float], max_attempts: int = 4) -> FeishuRetryPolicy:
    return FeishuRetryPolicy(
        max_attempts=max_attempts, sleep=sleeps.append, random=lambda: 0.5
    )


def free_limiter() -> FeishuRateLimiter:
    return FeishuRateLimiter(1000, 1000)


def test_sign_known_answer() -> None:
    assert (
        sign_feishu_bot(1599360473, "demo")
        == "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
    )


def test_sign_depends_on_inputs() -> None:
    reference = sign_feishu_bot(1599360473, "demo")

    assert sign_feishu_bot(1599360474, "demo") != reference
    assert sign_feishu_bot(1599360473, "demo2") != reference


def test_send_success(feishu_server: FeishuBotServer) -> None:
    bot = make_bot(feishu_server, "server-secret")

    with httpx.Client(timeout=5) as client:
        body = send_feishu_text(
            bot, "新的五星好评 ⭐", client=client, rate_limiter=free_limiter()
        )

    assert body["code"] == 0
    assert body["StatusCode"] == 0
    assert body["msg"] == "success"
    assert feishu_server.delivered_texts == ["新的五星好评 ⭐"]
    sent = feishu_server.requests[0].body
    assert sent is not None
    assert sent["msg_type"] == "text"
    assert sent["content"] == {"text": "新的五星好评 ⭐"}
    assert isinstance(sent["timestamp"], str)
    assert sent["sign"] == sign_feishu_bot(int(sent["timestamp"]), "server-secret")


def test_send_default_client(feishu_server: FeishuBotServer) -> None:
    bot = make_bot(feishu_server, "server-secret")

    send_feishu_text(bot, "hello", rate_limiter=free_limiter())

    assert feishu_server.delivered_texts == ["hello"]


def test_send_unsigned() -> None:
    with running_feishu_server(secret=None) as server:
        body = send_feishu_text(
            make_bot(server, None), "no signature", rate_limiter=free_limiter()
        )
        sent = server.requests[0].body

    assert body["code"] == 0
    assert sent == {"msg_type": "text", "content": {"text": "no signature"}}


def test_send_missing_secret_rejected(feishu_server: FeishuBotServer) -> None:
    with pytest.raises(FeishuSignatureError):
        send_feishu_text(
            make_bot(feishu_server, None), "hello", rate_limiter=free_limiter()
        )


def test_send_bad_secret(feishu_server: FeishuBotServer) -> None:
    sleeps: list[float] = []

    with pytest.raises(FeishuSignatureError) as caught:
        send_feishu_text(
            make_bot(feishu_server, "wrong-secret"),
            "hello",
            rate_limiter=free_limiter(),
            retry_policy=fast_policy(sleeps),
        )

    assert caught.value.code == 19021
    assert caught.value.is_retryable is False
    assert "signing_secret" in str(caught.value)
    assert "clock" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)
    assert len(feishu_server.requests) == 1
    assert sleeps == []
    assert feishu_server.delivered_texts == []


@pytest.mark.parametrize(
    ("skew", "is_accepted"),
    [(3599, True), (3601, False), (-3599, True), (-3601, False)],
)
def test_send_timestamp_window(skew: int, is_accepted: bool) -> None:
    server_now = 1_700_000_000.0

    with running_feishu_server(clock=lambda: server_now) as server:
        bot = make_bot(server, "server-secret")
        try:
            send_feishu_text(
                bot,
                "clock test",
                rate_limiter=free_limiter(),
                clock=lambda: server_now + skew,
            )
        except FeishuSignatureError:
            accepted = False
        else:
            accepted = True

    assert accepted is is_accepted


def test_send_rate_limited_then_delivered(feishu_server: FeishuBotServer) -> None:
    feishu_server.rate_limit_next(2)
    sleeps: list[float] = []

    body = send_feishu_text(
        make_bot(feishu_server, "server-secret"),
        "positive feedback from Alice",
        rate_limiter=free_limiter(),
        retry_policy=fast_policy(sleeps),
    )

    assert body["code"] == 0
    assert len(feishu_server.requests) == 3
    assert [r.response_code for r in feishu_server.requests] == [11232, 11232, 0]
    assert feishu_server.delivered_texts == ["positive feedback from Alice"]
    # Backoff of 1 s then 2 s, with random() fixed at 0.5 giving 75 % of each.
    assert sleeps == [0.75, 1.5]


def test_send_rate_limited_exhausted(feishu_server: FeishuBotServer) -> None:
    feishu_server.rate_limit_next(10)
    sleeps: list[float] = []

    with pytest.raises(FeishuRateLimitError) as caught:
        send_feishu_text(
            make_bot(feishu_server, "server-secret"),
            "hello",
            rate_limiter=free_limiter(),
            retry_policy=fast_policy(sleeps, max_attempts=3),
        )

    assert caught.value.code == 11232
    assert caught.value.is_retryable is True
    assert len(feishu_server.requests) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_send_server_error_retried(feishu_server: FeishuBotServer, status: int) -> None:
    feishu_server.fail_next(2, status=status)
    sleeps: list[float] = []

    body = send_feishu_text(
        make_bot(feishu_server, "server-secret"),
        "hello",
        rate_limiter=free_limiter(),
        retry_policy=fast_policy(sleeps),
    )

    assert body["code"] == 0
    assert [r.http_status for r in feishu_server.requests] == [status, status, 200]
    assert len(sleeps) == 2


def test_send_server_error_exhausted(feishu_server: FeishuBotServer) -> None:
    feishu_server.fail_next(5, status=503)

    with pytest.raises(FeishuUnavailableError, match="HTTP 503"):
        send_feishu_text(
            make_bot(feishu_server, "server-secret"),
            "hello",
            rate_limiter=free_limiter(),
            retry_policy=fast_policy([], max_attempts=2),
        )

    assert len(feishu_server.requests) == 2


def test_send_timeout_retried(feishu_server: FeishuBotServer) -> None:
    feishu_server.delay_next(1, seconds=1.0)
    sleeps: list[float] = []

    with httpx.Client(timeout=0.2) as client:
        body = send_feishu_text(
            make_bot(feishu_server, "server-secret"),
            "slow network",
            client=client,
            rate_limiter=free_limiter(),
            retry_policy=fast_policy(sleeps),
        )

    assert body["code"] == 0
    assert len(sleeps) == 1
    # The timed-out request still reaches the server later, so a timeout retry
    # can deliver a message twice. Wait for it to make that visible.
    for _ in range(100):
        if len(feishu_server.requests) == 2:
            break
        time.sleep(0.05)
    assert feishu_server.delivered_texts == ["slow network", "slow network"]


def test_send_connection_refused() -> None:
    with running_feishu_server() as server:
        bot = make_bot(server, "server-secret")
    sleeps: list[float] = []

    with pytest.raises(FeishuUnavailableError, match="network error"):
        send_feishu_text(
            bot,
            "hello",
            rate_limiter=free_limiter(),
            retry_policy=fast_policy(sleeps, max_attempts=2),
        )

    assert len(sleeps) == 1


def test_send_unknown_token(feishu_server: FeishuBotServer) -> None:
    bot = FeishuBotCredentials(
        webhook_url=feishu_server.url + "-other", signing_secret="server-secret"
    )

    with pytest.raises(FeishuBotError, match="code 19001") as caught:
        send_feishu_text(bot, "hello", rate_limiter=free_limiter())

    assert type(caught.value) is FeishuBotError
    assert caught.value.code == 19001
    assert "access token invalid" in caught.value.msg
    assert len(feishu_server.requests) == 1


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_send_empty_text(feishu_server: FeishuBotServer, text: str) -> None:
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        send_feishu_text(make_bot(feishu_server, "server-secret"), text)

    assert feishu_server.requests == []


def test_send_oversized_text(feishu_server: FeishuBotServer) -> None:
    with pytest.raises(ValueError, match="over the 20000-byte limit"):
        send_feishu_text(
            make_bot(feishu_server, "server-secret"),
            "好" * 7000,
            rate_limiter=free_limiter(),
        )

    assert feishu_server.requests == []


def test_send_waits_for_limiter(feishu_server: FeishuBotServer) -> None:
    clock = FakeClock(advance_on_sleep=False)
    limiter = FeishuRateLimiter(1, 100, clock=clock, sleep=clock.sleep)
    bot = make_bot(feishu_server, "server-secret")

    for index in range(3):
        send_feishu_text(bot, f"message {index}", rate_limiter=limiter)

    assert clock.sleeps == [1.0, 2.0]
    assert feishu_server.delivered_texts == ["message 0", "message 1", "message 2"]


def test_limiter_both_windows() -> None:
    clock = FakeClock()
    limiter = FeishuRateLimiter(2, 3, clock=clock, sleep=clock.sleep)

    waits = [limiter.acquire() for _ in range(6)]

    # Slots 1000, 1000, 1001 (second window), 1060 (minute window), 1060, 1061.
    assert waits == [0, 0, 1.0, 59.0, 0, 1.0]
    assert clock.now == 1061.0


def test_limiter_threads_queue() -> None:
    # The clock does not move, so each wait equals the slot's offset from 0.
    clock = FakeClock(start=0.0, advance_on_sleep=False)
    limiter = FeishuRateLimiter(3, 10, clock=clock, sleep=clock.sleep)
    waits: list[float] = []
    waits_lock = threading.Lock()

    def send_five() -> None:
        for _ in range(5):
            wait = limiter.acquire()
            with waits_lock:
                waits.append(wait)

    threads = [threading.Thread(target=send_five) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3] + [
        60,
        60,
        60,
        61,
        61,
        61,
        62,
        62,
        62,
        63,
    ]


def test_limiter_frees_old_slots() -> None:
    clock = FakeClock()
    limiter = FeishuRateLimiter(5, 100, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire()

    clock.now += 1.0

    assert limiter.acquire() == 0
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("per_second", "per_minute"), [(0, 100), (5, 0), (-1, 100), (1.5, 100)]
)
def test_limiter_invalid_limits(per_second: float, per_minute: int) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        FeishuRateLimiter(per_second, per_minute)  # type: ignore[arg-type]


def test_get_rate_limiter_per_bot() -> None:
    first = FeishuBotCredentials(webhook_url="http://127.0.0.1:1/hook/a")
    same = FeishuBotCredentials(webhook_url="http://127.0.0.1:1/hook/a")
    other = FeishuBotCredentials(webhook_url="http://127.0.0.1:1/hook/b")

    assert get_rate_limiter(first) is get_rate_limiter(same)
    assert get_rate_limiter(first) is not get_rate_limiter(other)


def test_retry_policy_delays() -> None:
    low = FeishuRetryPolicy(base_delay=1.0, max_delay=5.0, random=lambda: 0.0)
    high = FeishuRetryPolicy(base_delay=1.0, max_delay=5.0, random=lambda: 1.0)

    assert [low.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert [high.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_retry_policy_invalid() -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        FeishuRetryPolicy(max_attempts=0)


def test_notify_task_config() -> None:
    assert notify_feishu_group.name == "notify-feishu-group"
    assert notify_feishu_group.retries == 2


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (FeishuSignatureError("bad", code=19021), False),
        (FeishuBotError("bad", code=19001), False),
        (ValueError("empty"), False),
        (FeishuRateLimitError("busy", code=11232), True),
        (FeishuUnavailableError("down"), True),
    ],
)
def test_notify_retry_condition(error: Exception, expected: bool) -> None:
    state = Failed(data=error)

    assert _should_retry_notify(notify_feishu_group, None, state) is expected  # type: ignore[arg-type]


def test_notify_task_sends(feishu_server: FeishuBotServer) -> None:
    bot = make_bot(feishu_server, "server-secret")

    with disable_run_logger():
        body = notify_feishu_group.fn(bot, "from the task")

    assert body["code"] == 0
    assert feishu_server.delivered_texts == ["from the task"]
