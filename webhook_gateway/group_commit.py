"""Group commit: concurrent inserts share one transaction and one durable flush.

Each request thread hands its row to `GroupCommitter.insert` and blocks until the
row is committed. The first waiting thread becomes the writer: it takes every row
queued so far, inserts them in one transaction, and wakes their threads. Rows that
arrive meanwhile form the next batch. A request still gets its response only after
its own row is committed, but a burst of N deliveries costs one commit instead of
N. The commit's flush to disk is the slowest step of a durable insert on SQLite and
MySQL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

__all__ = ["GroupCommitter"]

logger = logging.getLogger(__name__)

# Maximum rows per transaction; a larger burst is written as several batches.
MAX_BATCH_ROWS = 500


class _PendingRow:
    __slots__ = ("created", "done", "error", "values")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.done = False
        self.created = False
        self.error: BaseException | None = None


class GroupCommitter:
    """Insert rows in shared transactions, reporting duplicates per row.

    Args:
        insert_many: Inserts all rows in one transaction, raising IntegrityError
            (with nothing committed) when any row violates a unique constraint.
        insert_one: Inserts one row in its own transaction, raising IntegrityError
            for a duplicate. Used to sort out a batch that contained a duplicate.
    """

    def __init__(
        self,
        insert_many: Callable[[Sequence[dict[str, Any]]], None],
        insert_one: Callable[[dict[str, Any]], None],
    ) -> None:
        self._insert_many = insert_many
        self._insert_one = insert_one
        self._queue: list[_PendingRow] = []
        self._queue_lock = threading.Lock()
        self._writer_lock = threading.Lock()

    def insert(self, values: dict[str, Any]) -> bool:
        """Insert a row; return False when it duplicates a stored row.

        Raises:
            Exception: Whatever the database raised for this row's batch, other than
                a unique violation.
        """
        row = _PendingRow(values)
        with self._queue_lock:
            self._queue.append(row)
        while not row.done:
            with self._writer_lock:
                if row.done:
                    break
                with self._queue_lock:
                    batch = self._queue[:MAX_BATCH_ROWS]
                    del self._queue[:MAX_BATCH_ROWS]
                self._write(batch)
        if row.error is not None:
            raise row.error
        return row.created

    def _write(self, batch: list[_PendingRow]) -> None:
        try:
            self._insert_many([row.values for row in batch])
        except IntegrityError:
            # A redelivery is in the batch: insert row by row to find which.
            self._write_one_by_one(batch)
            return
        except Exception as exc:  # noqa: BLE001
            # Any error is handed to every waiting thread, which re-raises it.
            logger.warning("group insert of %d rows failed: %s", len(batch), exc)
            self._finish(batch, error=exc)
            return
        self._finish(batch, created=True)

    def _write_one_by_one(self, batch: list[_PendingRow]) -> None:
        for row in batch:
            try:
                self._insert_one(row.values)
            except IntegrityError:
                row.created = False
            except Exception as exc:  # noqa: BLE001
                row.error = exc
            else:
                row.created = True
            row.done = True

    @staticmethod
    def _finish(
        batch: list[_PendingRow],
        *,
        created: bool = False,
        error: BaseException | None = None,
    ) -> None:
        for row in batch:
            row.created = created
            row.error = error
            row.done = True
