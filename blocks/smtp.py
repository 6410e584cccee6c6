"""Block for the SMTP server that sends customer notices by e-mail."""

from __future__ import annotations

import smtplib
import ssl

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = ["SMTPCredentials"]


class SMTPCredentials(Block):
    """Connection details of an SMTP server, used through the standard `smtplib`.

    Examples:
        ```python
        from email.message import EmailMessage

        credentials = SMTPCredentials.load("smtp")
        message = EmailMessage()
        message["From"] = credentials.from_address
        with credentials.get_client() as client:
            client.send_message(message)
        ```
    """

    _block_type_name = "SMTP Credentials"
    _description = "SMTP server and sender address for e-mailed customer notices."

    host: str = Field(description="SMTP server host name or address.")
    port: int = Field(
        default=587,
        description="SMTP server port: 587 for STARTTLS, 465 for implicit TLS, 25.",
    )
    username: str | None = Field(
        default=None, description="Login user; leave empty for a server without AUTH."
    )
    password: SecretStr | None = Field(default=None, description="The user's password.")
    from_address: str = Field(
        description="Sender address of the notices, e.g. 'Logistics <ops@example.com>'."
    )
    starttls: bool = Field(
        default=True,
        description="Upgrade the connection with STARTTLS before logging in.",
    )
    implicit_tls: bool = Field(
        default=False,
        description="Connect with TLS from the start (SMTPS, usually port 465).",
    )
    timeout: float = Field(
        default=30,
        gt=0,
        description="Timeout in seconds for connecting and each reply.",
    )

    def get_client(self) -> smtplib.SMTP:
        """Connect, upgrade to TLS when configured, log in and return the client.

        The caller closes it, for example with `with credentials.get_client() as c:`.

        Raises:
            OSError: The server cannot be reached or timed out.
            smtplib.SMTPException: The server rejected TLS or the login.
        """
        context = ssl.create_default_context()
        if self.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls and not self.implicit_tls:
                client.starttls(context=context)
            if self.username:
                password = self.password.get_secret_value() if self.password else ""
                client.login(self.username, password)
        except BaseException:
            client.close()
            raise
        return client
