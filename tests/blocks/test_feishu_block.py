"""Tests for the Feishu bot credentials block."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from blocks.feishu import FeishuBotCredentials


def test_block_fields() -> None:
    fields = FeishuBotCredentials.model_fields

    assert FeishuBotCredentials.get_block_type_name() == "Feishu Bot Credentials"
    assert set(fields) == {"webhook_url", "signing_secret"}
    for name, info in fields.items():
        assert info.description, f"{name} has no description"


def test_block_hides_secrets() -> None:
    bot = FeishuBotCredentials(
        webhook_url="http://127.0.0.1:1/open-apis/bot/v2/hook/token-123",
        signing_secret="secret-456",
    )

    assert isinstance(bot.webhook_url, SecretStr)
    assert "token-123" not in repr(bot)
    assert "secret-456" not in repr(bot)
    assert bot.signing_secret is not None
    assert bot.signing_secret.get_secret_value() == "secret-456"


def test_block_secret_optional() -> None:
    bot = FeishuBotCredentials(webhook_url="http://127.0.0.1:1/hook")

    assert bot.signing_secret is None


def test_block_get_client() -> None:
    bot = FeishuBotCredentials(webhook_url="http://127.0.0.1:1/hook")

    with bot.get_client(timeout=3.0) as client:
        assert isinstance(client, httpx.Client)
        assert client.timeout == httpx.Timeout(3.0)
