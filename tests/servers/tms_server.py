"""Local server for this project's TMS API (see `docs/tms-api.md`) for tests.

It checks the bearer token, stores shipments in memory, replays a reschedule whose
`Idempotency-Key` it has seen, and injects faults through `fail_next` and
`hang_next`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from pydantic import AwareDatetime, BaseModel, ValidationError

from flows.tasks.tms import WINDOW_FIELDS, Shipment
from tests.servers.http_base import LocalHTTPServer, RecordedRequest, Response

RESCHEDULE_PATH = re.compile(r"^/api/shipments/(?P<id>[^/]+)/reschedule$")


class RescheduleBody(BaseModel, extra="forbid"):
    pickup_start: AwareDatetime
    pickup_end: AwareDatetime
    delivery_start: AwareDatetime
    delivery_end: AwareDatetime
    reason: str
    event_id: str


class TMSServer(LocalHTTPServer):
    """In-memory TMS speaking the API of `flows.tasks.tms`.

    Args:
        token: The bearer token that requests must send.
        shipments: Initial shipments, all open.
    """

    def __init__(
        self, *, token: str = "tms-test-token", shipments: Sequence[Shipment] = ()
    ) -> None:
        super().__init__()
        self.token = token
        self.shipments: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, str] = {}
        self.replies: dict[str, Response] = {}
        for shipment in shipments:
            self.add(shipment)

    def add(self, shipment: Shipment, *, status: str = "open") -> None:
        """Store a shipment with this status."""
        self.shipments[shipment.id] = shipment.model_dump(mode="json")
        self.statuses[shipment.id] = status

    def _error(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    def handle(self, request: RecordedRequest) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(token, self.token):
            return self._error(401, "Invalid or missing bearer token.")

        if request.method == "GET" and request.path == "/api/shipments":
            return self._list(request)
        match = RESCHEDULE_PATH.match(request.path)
        if request.method == "POST" and match is not None:
            return self._reschedule(request, unquote(match.group("id")))
        return self._error(404, f"No route for {request.method} {request.path}.")

    def _list(self, request: RecordedRequest) -> Response:
        materials = request.query.get("material")
        if not materials:
            return self._error(400, "Query parameter 'material' is required.")
        status = request.query.get("status", ["open"])[0]
        found = [
            shipment
            for shipment_id, shipment in self.shipments.items()
            if shipment["material"] in materials
            and self.statuses[shipment_id] == status
        ]
        return Response(200, found)

    def _reschedule(self, request: RecordedRequest, shipment_id: str) -> Response:
        key = request.headers.get("idempotency-key")
        if not key:
            return self._error(400, "Header 'Idempotency-Key' is required.")
        if key in self.replies:
            stored = self.replies[key]
            headers = {**stored.headers, "Idempotent-Replayed": "true"}
            return Response(stored.status, stored.body, headers)

        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            return self._error(404, f"Shipment {shipment_id!r} not found.")
        if self.statuses[shipment_id] != "open":
            return self._error(
                409,
                f"Shipment {shipment_id!r} has status "
                f"{self.statuses[shipment_id]!r} and cannot be rescheduled.",
            )
        try:
            body = RescheduleBody.model_validate_json(request.body)
        except (ValidationError, json.JSONDecodeError) as exc:
            return self._error(400, f"Invalid reschedule body: {exc}")

        updated = {
            **shipment,
            **{name: getattr(body, name).isoformat() for name in WINDOW_FIELDS},
        }
        try:
            Shipment.model_validate(updated)
        except ValidationError as exc:
            return self._error(400, f"Invalid windows: {exc}")
        self.shipments[shipment_id] = updated
        reply = Response(200, updated)
        self.replies[key] = reply
        return reply
