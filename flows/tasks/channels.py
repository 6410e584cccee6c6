"""Channels that deliver approved customer notices: e-mail, a chat bot, an outbox.

Errors:

    NoticeDeliveryError              the channel rejected the notice; fix and rerun
    └── NoticeChannelUnavailableError  retryable: connection failure, timeout,
                                       SMTP 4xx reply, HTTP 5xx or 429
"""

from __future__ import annotations

import hashlib
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol, runtime_checkable

import httpx
import sqlalchemy as sa
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from blocks.chat_webhook import ChatWebhookCredentials
from blocks.smtp import SMTPCredentials
from flows.tasks.notices import CustomerNotice
from flows.tasks.records import insert_if_absent, records_metadata
from webhook_gateway.verification.dingtalk import dingtalk_sign

__all__ = [
    "ChatWebhookChannel",
    "EmailChannel",
    "NoticeChannel",
    "NoticeChannelUnavailableError",
    "NoticeDeliveryError",
    "OutboxChannel",
    "customer_contacts",
    "notice_outbox",
    "send_customer_notice",
]

customer_contacts = sa.Table(
    "customer_contacts",
    records_metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
)

notice_outbox = sa.Table(
    "notice_outbox",
    records_metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class NoticeDeliveryError(Exception):
    """The channel rejected the notice, so the same request would fail again."""


class NoticeChannelUnavailableError(NoticeDeliveryError):
    """The channel failed or timed out, so a retry may succeed."""


@runtime_checkable
class NoticeChannel(Protocol):
    """Destination of approved notices."""

    name: str
    description: str

    def send(self, notice: CustomerNotice, text: str) -> tuple[str | None, str | None]:
        """Deliver `text` and return the recipient and a delivery id (either may
        be None)."""
        ...


def _notice_digest(notice: CustomerNotice) -> str:
    return hashlib.sha256(f"{notice.event_id}\n{notice.order_id}".encode()).hexdigest()


class EmailChannel:
    """E-mail through an SMTP server to the customer's address in `customer_contacts`.

    The Message-ID is derived from the event and order ids, so a notice sent twice
    after a crash carries the same id and mail clients can show it once.
    """

    name = "email"

    def __init__(self, credentials: SMTPCredentials, engine: sa.Engine) -> None:
        self._credentials = credentials
        self._engine = engine
        self.description = f"e-mail via SMTP {credentials.host}:{credentials.port}"

    def recipient_for(self, customer_id: str) -> str:
        """Return the e-mail address of a customer.

        Raises:
            NoticeDeliveryError: The customer has no address in `customer_contacts`.
        """
        records_metadata.create_all(self._engine, tables=[customer_contacts])
        query = sa.select(customer_contacts.c.email).where(
            customer_contacts.c.customer_id == customer_id
        )
        with self._engine.connect() as connection:
            email = connection.execute(query).scalar()
        if not email:
            raise NoticeDeliveryError(
                f"No e-mail address for customer {customer_id!r}: add a row to table "
                f"{customer_contacts.name!r} and retry the flow run."
            )
        return str(email)

    def send(self, notice: CustomerNotice, text: str) -> tuple[str | None, str | None]:
        """Send the notice; returns the recipient and the Message-ID.

        Raises:
            NoticeDeliveryError: No address, or the server rejected it (SMTP 5xx).
            NoticeChannelUnavailableError: Connection failure, timeout, SMTP 4xx.
        """
        recipient = self.recipient_for(notice.customer_id)
        sender_domain = parseaddr(self._credentials.from_address)[1].rpartition("@")[2]
        message_id = (
            f"<notice.{_notice_digest(notice)[:32]}@{sender_domain or 'localhost'}>"
        )
        message = EmailMessage()
        message["From"] = self._credentials.from_address
        message["To"] = recipient
        message["Subject"] = notice.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = message_id
        message.set_content(text)

        server = f"{self._credentials.host}:{self._credentials.port}"
        try:
            with self._credentials.get_client() as client:
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            detail = f"SMTP {exc.smtp_code} {exc.smtp_error!r}"
            if 400 <= exc.smtp_code < 500:
                raise NoticeChannelUnavailableError(
                    f"SMTP server {server} deferred the notice for order "
                    f"{notice.order_id!r} ({detail}); the task retries it."
                ) from exc
            raise NoticeDeliveryError(
                f"SMTP server {server} rejected the notice for order "
                f"{notice.order_id!r} to {recipient!r} ({detail}). Check the address "
                "and the SMTPCredentials block."
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise NoticeDeliveryError(
                f"SMTP server {server} rejected recipient {recipient!r} of the notice "
                f"for order {notice.order_id!r}: {exc.recipients!r}."
            ) from exc
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise NoticeChannelUnavailableError(
                f"SMTP server {server} is unreachable or timed out after "
                f"{self._credentials.timeout} s: {exc!r}. The task retries it."
            ) from exc
        return recipient, message_id


class ChatWebhookChannel:
    """A text message to a chat group through a bot's incoming webhook."""

    name = "chat-webhook"

    def __init__(self, credentials: ChatWebhookCredentials) -> None:
        self._credentials = credentials
        self.description = f"chat webhook ({credentials.message_format})"

    def _body(self, content: str) -> dict[str, Any]:
        message_format = self._credentials.message_format
        if message_format in ("dingtalk", "wecom"):
            return {"msgtype": "text", "text": {"content": content}}
        if message_format == "feishu":
            return {"msg_type": "text", "content": {"text": content}}
        return {"text": content}

    def _url(self) -> httpx.URL:
        url = httpx.URL(self._credentials.url.get_secret_value())
        secret = self._credentials.secret
        if secret is not None and self._credentials.message_format == "dingtalk":
            timestamp = str(int(time.time() * 1000))
            sign = dingtalk_sign(timestamp, secret.get_secret_value())
            url = url.copy_merge_params({"timestamp": timestamp, "sign": sign})
        return url

    def send(self, notice: CustomerNotice, text: str) -> tuple[str | None, str | None]:
        """Post the notice; returns no recipient and no delivery id.

        Raises:
            NoticeDeliveryError: HTTP 4xx, or the platform's error code in the body.
            NoticeChannelUnavailableError: Timeout, connection failure, 5xx or 429.
        """
        content = f"{notice.subject}\n\n{text}"
        # The URL contains the bot's token, so messages name only the host.
        host = httpx.URL(self._credentials.url.get_secret_value()).host
        try:
            with self._credentials.get_client() as client:
                response = client.post(self._url(), json=self._body(content))
        except httpx.TransportError as exc:
            raise NoticeChannelUnavailableError(
                f"Chat webhook at {host!r} is unreachable or timed out: "
                f"{type(exc).__name__}. The task retries it."
            ) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise NoticeChannelUnavailableError(
                f"Chat webhook at {host!r} responded with HTTP {response.status_code}; "
                "the task retries it."
            )
        if response.status_code >= 400:
            raise NoticeDeliveryError(
                f"Chat webhook at {host!r} rejected the notice for order "
                f"{notice.order_id!r} with HTTP {response.status_code}: "
                f"{response.text[:200]!r}. Check the ChatWebhookCredentials block."
            )
        _raise_for_platform_error(response, host, notice)
        return None, None


def _raise_for_platform_error(
    response: httpx.Response, host: str | None, notice: CustomerNotice
) -> None:
    """DingTalk and WeCom return `errcode`, Feishu `code`; nonzero is an error."""
    try:
        body = response.json()
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    code = body.get("errcode", body.get("code", 0))
    if code not in (0, None):
        message = body.get("errmsg") or body.get("msg") or ""
        raise NoticeDeliveryError(
            f"Chat webhook at {host!r} rejected the notice for order "
            f"{notice.order_id!r} with error code {code!r}: {message!r}."
        )


class OutboxChannel:
    """Rows in the `notice_outbox` table, the embedded default without a channel."""

    name = "outbox"

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self.description = f"table {notice_outbox.name!r} in the records database"

    def send(self, notice: CustomerNotice, text: str) -> tuple[str | None, str | None]:
        """Insert the notice once per (event, order); returns no recipient."""
        records_metadata.create_all(self._engine, tables=[notice_outbox])
        with self._engine.begin() as connection:
            insert_if_absent(
                connection,
                notice_outbox,
                {
                    "event_id": notice.event_id,
                    "order_id": notice.order_id,
                    "customer_id": notice.customer_id,
                    "subject": notice.subject,
                    "text": text,
                    "created_at": datetime.now(UTC),
                },
            )
        return None, f"outbox:{notice.event_id}:{notice.order_id}"


def _is_channel_unavailable(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect retry condition: retry only `NoticeChannelUnavailableError`."""
    return isinstance(
        state.result(raise_on_failure=False), NoticeChannelUnavailableError
    )


@task(
    name="send-customer-notice",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_condition_fn=_is_channel_unavailable,
    cache_policy=NO_CACHE,
)
def send_customer_notice(
    channel: NoticeChannel, notice: CustomerNotice, text: str
) -> tuple[str | None, str | None]:
    """Deliver one approved notice; returns the recipient and the delivery id.

    Retries (5, 10 and 20 s apart) happen only for `NoticeChannelUnavailableError`.
    """
    recipient, delivery_id = channel.send(notice, text)
    get_run_logger().info(
        "sent notice for order %s through %s (delivery id %s)",
        notice.order_id,
        channel.description,
        delivery_id,
    )
    return recipient, delivery_id
