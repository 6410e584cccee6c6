"""Local SMTP server on 127.0.0.1 that keeps every message it receives, for tests.

It runs aiosmtpd's SMTP protocol on an asyncio loop in a background thread and
accepts AUTH PLAIN and LOGIN without TLS for one user.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMail", "SMTPServer"]


@dataclass(frozen=True)
class ReceivedMail:
    """One message: the envelope addresses and the parsed message."""

    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        """The plain-text body."""
        body = self.message.get_body(preferencelist=("plain",))
        return body.get_content() if body is not None else ""


class SMTPServer:
    """SMTP server on a free port of 127.0.0.1; use it as a context manager.

    Args:
        username: The user AUTH accepts.
        password: That user's password.
    """

    def __init__(
        self, *, username: str = "notices", password: str = "smtp-test"
    ) -> None:
        self.username = username
        self.password = password
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    # aiosmtpd calls the handler method by this name.
    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        with self._lock:
            self.messages.append(
                ReceivedMail(
                    sender=str(envelope.mail_from),
                    recipients=list(envelope.rcpt_tos),
                    message=message,  # type: ignore[arg-type]
                )
            )
        return "250 Message accepted for delivery"

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        accepted = (
            auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=accepted, handled=False)

    def _protocol(self) -> SMTP:
        return SMTP(
            self,
            hostname="smtp.test",
            authenticator=self._authenticate,
            auth_require_tls=False,
        )

    def start(self) -> None:
        """Start the loop thread and listen on a free port."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(self._protocol, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listening socket and stop the loop."""
        if self._server is not None:
            self._server.close()
            asyncio.run_coroutine_threadsafe(
                self._server.wait_closed(), self._loop
            ).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
