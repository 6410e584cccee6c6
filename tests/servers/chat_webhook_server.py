"""Local chat-bot webhook that answers like DingTalk's robot send API, for tests."""

from __future__ import annotations

from typing import Any

from tests.servers.http_base import LocalHTTPServer, RecordedRequest, Response

__all__ = ["ChatWebhookServer"]

WEBHOOK_PATH = "/robot/send"


class ChatWebhookServer(LocalHTTPServer):
    """Accepts `POST /robot/send?access_token=<token>` with a DingTalk text body.

    Answers `{"errcode": 0, "errmsg": "ok"}`, or errcode 300001 for a wrong token
    with HTTP 200, as DingTalk does.
    """

    def __init__(self, *, access_token: str = "robot-test-token") -> None:
        super().__init__()
        self.access_token = access_token

    @property
    def webhook_url(self) -> str:
        """The URL to store in the ChatWebhookCredentials block."""
        return f"{self.url}{WEBHOOK_PATH}?access_token={self.access_token}"

    def messages(self) -> list[dict[str, Any]]:
        """Bodies of the accepted posts, oldest first."""
        return [
            request.json()
            for request in self.requests_to("POST", WEBHOOK_PATH)
            if request.query.get("access_token") == [self.access_token]
        ]

    def handle(self, request: RecordedRequest) -> Response:
        if request.method != "POST" or request.path != WEBHOOK_PATH:
            return Response(404, {"errcode": 404, "errmsg": "not found"})
        if request.query.get("access_token") != [self.access_token]:
            return Response(200, {"errcode": 300001, "errmsg": "token is not exist"})
        body = request.json()
        if body.get("msgtype") != "text" or not body.get("text", {}).get("content"):
            return Response(200, {"errcode": 40035, "errmsg": "invalid text message"})
        return Response(200, {"errcode": 0, "errmsg": "ok"})
