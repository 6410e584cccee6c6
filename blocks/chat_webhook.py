"""Block for a chat-bot webhook (DingTalk, WeCom, Feishu, Slack) that posts notices."""

from __future__ import annotations

from typing import Literal

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = ["ChatWebhookCredentials"]


class ChatWebhookCredentials(Block):
    """An incoming-webhook URL of a chat bot, with the message format it expects.

    The URL is a secret because most chat platforms put the bot's access token in
    it.
    """

    _block_type_name = "Chat Webhook Credentials"
    _description = "Incoming-webhook URL of a chat bot that posts customer notices."

    url: SecretStr = Field(
        description=(
            "The bot's webhook URL, e.g. "
            "'https://oapi.dingtalk.com/robot/send?access_token=...'."
        )
    )
    message_format: Literal["dingtalk", "wecom", "feishu", "slack"] = Field(
        default="dingtalk",
        description=(
            "Body the platform expects: 'dingtalk' and 'wecom' send "
            '{"msgtype": "text", ...}, \'feishu\' sends {"msg_type": "text", ...}, '
            "'slack' sends {\"text\": ...}."
        ),
    )
    secret: SecretStr | None = Field(
        default=None,
        description=(
            "DingTalk only: the bot's signing secret (starts with 'SEC'), for bots "
            "whose security setting is signing."
        ),
    )
    timeout: float = Field(
        default=10, gt=0, description="Timeout in seconds for one webhook request."
    )

    def get_client(self) -> httpx.Client:
        """Return an httpx client with the block's timeout; the caller closes it."""
        return httpx.Client(timeout=self.timeout)
