"""Signed DingTalk deliveries built from the example callback payload."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

from webhook_gateway.verification.dingtalk import dingtalk_sign

__all__ = ["SHARED_PAYLOAD", "UPSTREAM_PAYLOAD", "dingtalk_headers", "dingtalk_payload"]

# The example callback ships with the tests, so a clone without the project's
# shared data folder still runs them. When that folder sits beside the checkout
# (in CI, or a git worktree one level deeper), a test checks the two are equal.
SHARED_PAYLOAD = (
    Path(__file__).resolve().parents[1] / "data" / "dingtalk_robot_callback.json"
)
_UPSTREAM_PATH = Path("shared") / "payloads" / "dingtalk_robot_callback.json"
UPSTREAM_PAYLOAD = next(
    (
        folder / _UPSTREAM_PATH
        for folder in Path(__file__).resolve().parents[2:]
        if (folder / _UPSTREAM_PATH).is_file()
    ),
    None,
)


def dingtalk_payload(content: str | None = None) -> dict[str, Any]:
    """Return the example callback with a fresh msgId (and optionally new text)."""
    payload = copy.deepcopy(json.loads(SHARED_PAYLOAD.read_text(encoding="utf-8")))
    payload["msgId"] = f"msg{uuid.uuid4().hex}"
    if content is not None:
        payload["text"]["content"] = content
    return payload


def dingtalk_headers(secret: str, *, age_seconds: float = 0) -> dict[str, str]:
    """Headers DingTalk sends, signed `age_seconds` ago."""
    timestamp = str(int((time.time() - age_seconds) * 1000))
    return {
        "content-type": "application/json",
        "timestamp": timestamp,
        "sign": dingtalk_sign(timestamp, secret),
    }
