"""Prefect block for a Feishu (Lark) group custom bot."""

from __future__ import annotations

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

DEFAULT_TIMEOUT_SECONDS = 10.0


class FeishuBotCredentials(Block):
    """Webhook address and signing secret of a Feishu group custom bot.

    Examples:
        Load a saved block and send a message:
        ```python
        from blocks.feishu import FeishuBotCredentials
        from flows.tasks.feishu import send_feishu_text

        bot = FeishuBotCredentials.load("product-team-bot")
        send_feishu_text(bot, "New five-star review")
        ```
    """

    _block_type_name = "Feishu Bot Credentials"
    _description = "Webhook address and signing secret of a Feishu group custom bot."

    webhook_url: SecretStr = Field(
        default=...,
        description=(
            "Webhook address of the custom bot, as shown in the group's bot "
            "settings: https://open.feishu.cn/open-apis/bot/v2/hook/<token>. "
            "The token in it is a credential."
        ),
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Secret of the bot's signature verification setting. Leave empty only "
            "if the bot has signature verification turned off."
        ),
    )

    def get_client(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> httpx.Client:
        """Return an HTTP client for the bot's webhook. The caller closes it.

        Args:
            timeout: Connect, read and write timeout in seconds.
        """
        return httpx.Client(timeout=timeout)
