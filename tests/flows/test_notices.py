"""Notice drafts, languages, late-order grouping and the three delivery channels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from blocks.chat_webhook import ChatWebhookCredentials
from blocks.smtp import SMTPCredentials
from flows.tasks.channels import (
    ChatWebhookChannel,
    EmailChannel,
    NoticeChannelUnavailableError,
    NoticeDeliveryError,
    OutboxChannel,
    customer_contacts,
    notice_outbox,
)
from flows.tasks.notices import (
    AtRiskOrder,
    CustomerNotice,
    at_risk_orders,
    decision_form,
    notice_language,
    render_template_notice,
)
from flows.tasks.records import records_metadata
from tests.servers.chat_webhook_server import ChatWebhookServer
from tests.servers.smtp_server import SMTPServer
from webhook_gateway.verification.dingtalk import dingtalk_sign

DELAY = SimpleNamespace(delay_days=3, reason="台风")


def _order(locale: str) -> AtRiskOrder:
    return AtRiskOrder(
        order_id="SO-7",
        customer_id="C-7",
        customer_locale=locale,
        shipment_ids=["SHP-7"],
        materials=["A03-205"],
        promised_date=date(2026, 3, 5),
        new_delivery_date=date(2026, 3, 8),
    )


def _notice(**changes: Any) -> CustomerNotice:
    values: dict[str, Any] = {
        "event_id": "evt-1",
        "order_id": "SO-7",
        "customer_id": "C-7",
        "customer_locale": "en-GB",
        "language": "en",
        "shipment_ids": ["SHP-7"],
        "materials": ["A03-205"],
        "promised_date": date(2026, 3, 5),
        "new_delivery_date": date(2026, 3, 8),
        "subject": "Delivery delay for order SO-7",
        "draft_text": "Dear customer C-7, ...",
        "drafted_by": "template",
        "status": "approved",
    }
    values.update(changes)
    return CustomerNotice(**values)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'records.db'}")
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    ("locale", "language"),
    [("zh-CN", "zh"), ("zh_TW", "zh"), ("ZH", "zh"), ("en-GB", "en"), ("de-DE", "en")],
)
def test_notice_language(locale: str, language: str) -> None:
    assert notice_language(locale) == language


def test_template_notice_chinese() -> None:
    subject, text = render_template_notice(_order("zh-CN"), DELAY)

    assert subject == "订单 SO-7 交付延迟通知"
    assert "尊敬的客户 C-7" in text
    assert "推迟了 3 天（原因：台风）" in text
    assert "2026-03-05" in text
    assert "2026-03-08" in text


def test_template_notice_english_no_reason() -> None:
    delay = SimpleNamespace(delay_days=2, reason=None)

    subject, text = render_template_notice(_order("en-US"), delay)

    assert subject == "Delivery delay for order SO-7"
    assert "order SO-7 will be late" in text
    assert "by 2 days." in text
    assert "(" not in text


def test_at_risk_orders_groups_by_order() -> None:
    def update(shipment: str, order: str, missed: bool, end: str) -> dict[str, Any]:
        return {
            "shipment_id": shipment,
            "order_id": order,
            "material": "A03-205" if shipment != "S3" else "B11-010",
            "customer_id": "C-1",
            "customer_locale": "zh-CN",
            "promised_date": date(2026, 3, 5) if shipment != "S3" else date(2026, 3, 4),
            "promise_missed": missed,
            "new_windows": {"delivery_end": end},
        }

    orders = at_risk_orders(
        [
            update("S1", "SO-2", True, "2026-03-07T17:00:00+08:00"),
            update("S3", "SO-2", True, "2026-03-09T01:00:00+08:00"),
            update("S2", "SO-1", False, "2026-03-06T17:00:00+08:00"),
        ]
    )

    assert [order.order_id for order in orders] == ["SO-2"]
    assert orders[0].shipment_ids == ["S1", "S3"]
    assert orders[0].materials == ["A03-205", "B11-010"]
    assert orders[0].promised_date == date(2026, 3, 4)
    assert orders[0].new_delivery_date == date(2026, 3, 9)


def test_decision_form_prefilled() -> None:
    form = decision_form(_notice(status="draft"), "OPS-4")

    decision = form()

    assert decision.action == "approve"
    assert decision.text == "Dear customer C-7, ..."
    assert "OPS-4" in form._description
    with pytest.raises(ValueError):
        form(action="send")


def test_email_channel_sends(sqlite_engine: sa.Engine) -> None:
    records_metadata.create_all(sqlite_engine, tables=[customer_contacts])
    with sqlite_engine.begin() as connection:
        connection.execute(
            customer_contacts.insert().values(customer_id="C-7", email="c7@example.com")
        )
    with SMTPServer() as server:
        credentials = SMTPCredentials(
            host="127.0.0.1",
            port=server.port,
            username=server.username,
            password=server.password,
            from_address="Logistics <ops@example.com>",
            starttls=False,
        )

        recipient, message_id = EmailChannel(credentials, sqlite_engine).send(
            _notice(), "Your order SO-7 is late."
        )

    assert recipient == "c7@example.com"
    assert len(server.messages) == 1
    mail = server.messages[0]
    assert mail.recipients == ["c7@example.com"]
    assert mail.message["Subject"] == "Delivery delay for order SO-7"
    assert mail.message["Message-ID"] == message_id
    assert message_id.endswith("@example.com>")
    assert mail.text.strip() == "Your order SO-7 is late."


def test_email_channel_no_contact(sqlite_engine: sa.Engine) -> None:
    credentials = SMTPCredentials(
        host="127.0.0.1", port=1, from_address="ops@example.com", starttls=False
    )

    with pytest.raises(
        NoticeDeliveryError, match="No e-mail address for customer 'C-7'"
    ):
        EmailChannel(credentials, sqlite_engine).send(_notice(), "text")


def test_email_channel_wrong_password(sqlite_engine: sa.Engine) -> None:
    records_metadata.create_all(sqlite_engine, tables=[customer_contacts])
    with sqlite_engine.begin() as connection:
        connection.execute(
            customer_contacts.insert().values(customer_id="C-7", email="c7@example.com")
        )
    with SMTPServer() as server:
        credentials = SMTPCredentials(
            host="127.0.0.1",
            port=server.port,
            username=server.username,
            password="wrong",
            from_address="ops@example.com",
            starttls=False,
        )

        with pytest.raises(NoticeDeliveryError, match="SMTP 535") as caught:
            EmailChannel(credentials, sqlite_engine).send(_notice(), "text")

    assert not isinstance(caught.value, NoticeChannelUnavailableError)
    assert server.messages == []


def test_email_channel_unreachable(sqlite_engine: sa.Engine) -> None:
    records_metadata.create_all(sqlite_engine, tables=[customer_contacts])
    with sqlite_engine.begin() as connection:
        connection.execute(
            customer_contacts.insert().values(customer_id="C-7", email="c7@example.com")
        )
    with SMTPServer() as server:
        port = server.port
    credentials = SMTPCredentials(
        host="127.0.0.1", port=port, from_address="ops@example.com", starttls=False
    )

    with pytest.raises(NoticeChannelUnavailableError, match="unreachable"):
        EmailChannel(credentials, sqlite_engine).send(_notice(), "text")


def test_chat_webhook_channel_signed() -> None:
    with ChatWebhookServer() as server:
        credentials = ChatWebhookCredentials(
            url=server.webhook_url, secret="SEC-test-secret"
        )

        ChatWebhookChannel(credentials).send(_notice(), "Your order SO-7 is late.")

    assert len(server.messages()) == 1
    assert server.messages()[0]["text"]["content"] == (
        "Delivery delay for order SO-7\n\nYour order SO-7 is late."
    )
    query = server.requests[0].query
    assert query["sign"] == [dingtalk_sign(query["timestamp"][0], "SEC-test-secret")]


def test_chat_webhook_channel_error_code() -> None:
    with ChatWebhookServer() as server:
        credentials = ChatWebhookCredentials(
            url=f"{server.url}/robot/send?access_token=x"
        )

        with pytest.raises(NoticeDeliveryError, match="error code 300001"):
            ChatWebhookChannel(credentials).send(_notice(), "text")


def test_chat_webhook_channel_5xx_retryable() -> None:
    with ChatWebhookServer() as server:
        server.fail_next(1, status=502)
        credentials = ChatWebhookCredentials(url=server.webhook_url)

        with pytest.raises(NoticeChannelUnavailableError, match="HTTP 502") as caught:
            ChatWebhookChannel(credentials).send(_notice(), "text")

    assert server.access_token not in str(caught.value)


def test_outbox_channel_once(sqlite_engine: sa.Engine) -> None:
    channel = OutboxChannel(sqlite_engine)

    channel.send(_notice(), "first text")
    channel.send(_notice(), "second text")

    with sqlite_engine.connect() as connection:
        rows = connection.execute(sa.select(notice_outbox)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["text"] == "first text"
    assert rows[0]["order_id"] == "SO-7"
