"""Block for the MySQL or MariaDB database the flows write their records to."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from sqlalchemy import URL, Engine, create_engine

__all__ = ["MySQLCredentials"]


class MySQLCredentials(Block):
    """Connection details of a MySQL or MariaDB database, used through pymysql."""

    _block_type_name = "MySQL Credentials"
    _description = "Where the webhook flows store their records (MySQL or MariaDB)."

    host: str = Field(default="127.0.0.1", description="Server host name or address.")
    port: int = Field(default=3306, description="Server port.")
    username: str = Field(default="root", description="Database user.")
    password: SecretStr | None = Field(default=None, description="The user's password.")
    database: str = Field(description="Database (schema) name.")
    charset: str = Field(default="utf8mb4", description="Connection character set.")

    def get_url(self) -> URL:
        """Return the SQLAlchemy URL for the pymysql driver."""
        return URL.create(
            "mysql+pymysql",
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            host=self.host,
            port=self.port,
            database=self.database,
            query={"charset": self.charset},
        )

    def get_engine(self) -> Engine:
        """Return a SQLAlchemy engine that reconnects after the server drops idle links."""
        return create_engine(self.get_url(), pool_pre_ping=True, pool_recycle=3600)
