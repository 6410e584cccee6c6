"""Signed DingTalk deliveries built from the shared example payload."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

from webhook_gateway.verification.dingtalk import dingtalk_sign

__all__ = ["dingtalk_headers", "dingtalk_payload"]

_PAYLOAD_PATH = Path("shared") / "payloads" / "dingtalk_robot_callback.json"
# shared/ lies beside the repository; a git worktree sits one folder deeper, so
# take the nearest ancestor that has it.
SHARED_PAYLOAD = next(
    (
        folder / _PAYLOAD_PATH
        for folder in Path(__file__).resolve().parents[2:]
        if (folder / _PAYLOAD_PATH).is_file()
    ),
    Path(__file__).resolve().parents[3] / _PAYLOAD_PATH,
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
