"""Local Jira REST API v2 server for tests that drive the real `jira` client.

Implemented, under `/rest/api/2/` (also `3` and `latest`):

- `GET serverInfo`, `GET myself`, `GET field`
- `GET search` (Server/Data Center) and `GET search/jql` (Cloud), with a JQL
  subset: `field = value` clauses on `project`, `labels` and `key` joined by
  `AND`, then an optional `ORDER BY created|key [ASC|DESC]`
- `POST issue` (returns `{id, key, self}`) and `GET issue/{key}`

Every request needs HTTP basic auth with the configured user and token, otherwise
the response is 401 with a Jira-style `{"errorMessages": [...], "errors": {}}`.
Issues live in memory. Faults come from `fail_next` and `hang_next`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.servers.http_base import LocalHTTPServer, RecordedRequest, Response

API_PATH = re.compile(r"^/rest/api/(?:2|3|latest)/(?P<resource>.+)$")
ISSUE_PATH = re.compile(r"^issue/(?P<key>[^/]+)$")
JQL_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>=)|(?P<word>[A-Za-z0-9_.\-]+))'
)
DEFAULT_PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
FIELDS = [
    {"id": "summary", "name": "Summary", "clauseNames": ["summary"]},
    {"id": "description", "name": "Description", "clauseNames": ["description"]},
    {"id": "labels", "name": "Labels", "clauseNames": ["labels"]},
    {"id": "project", "name": "Project", "clauseNames": ["project"]},
    {"id": "issuetype", "name": "Issue Type", "clauseNames": ["issuetype", "type"]},
    {"id": "priority", "name": "Priority", "clauseNames": ["priority"]},
    {"id": "assignee", "name": "Assignee", "clauseNames": ["assignee"]},
    {"id": "created", "name": "Created", "clauseNames": ["created", "createdDate"]},
]


class JQLError(ValueError):
    """The query uses syntax or fields outside the supported subset."""


@dataclass(frozen=True)
class JQLQuery:
    """A parsed query: (field, value) clauses that must all hold, and an order."""

    clauses: tuple[tuple[str, str], ...]
    order_by: str = "key"
    descending: bool = False


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_jql(jql: str) -> JQLQuery:
    """Parse the supported JQL subset, raising `JQLError` on anything else."""
    tokens: list[tuple[str, str]] = []
    position = 0
    text = jql.strip()
    while position < len(text):
        match = JQL_TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise JQLError(f"Error in the JQL Query: unexpected text at {position}.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1

    clauses: list[tuple[str, str]] = []
    order_by, descending = "key", False
    index = 0
    while index < len(tokens):
        kind, value = tokens[index]
        if kind == "word" and value.upper() == "ORDER":
            rest = [token[1] for token in tokens[index:]]
            if len(rest) < 3 or rest[1].upper() != "BY":
                raise JQLError("Error in the JQL Query: expected ORDER BY <field>.")
            order_by = rest[2].lower()
            if order_by not in ("created", "key"):
                raise JQLError(f"Error in the JQL Query: cannot order by {rest[2]!r}.")
            if len(rest) > 3:
                direction = rest[3].upper()
                if direction not in ("ASC", "DESC") or len(rest) > 4:
                    raise JQLError("Error in the JQL Query: expected ASC or DESC.")
                descending = direction == "DESC"
            break
        if clauses:
            if kind != "word" or value.upper() != "AND":
                raise JQLError(f"Error in the JQL Query: expected AND, got {value!r}.")
            index += 1
        if index + 3 > len(tokens):
            raise JQLError("Error in the JQL Query: incomplete clause.")
        (field_kind, field_name), (op_kind, _), (value_kind, raw_value) = tokens[
            index : index + 3
        ]
        if field_kind != "word" or op_kind != "op" or value_kind == "op":
            raise JQLError("Error in the JQL Query: expected <field> = <value>.")
        name = field_name.lower()
        if name not in ("project", "labels", "key"):
            raise JQLError(
                f"Field '{field_name}' does not exist or you do not have permission "
                "to view it."
            )
        clause_value = _unquote(raw_value) if value_kind == "string" else raw_value
        clauses.append((name, clause_value))
        index += 3
    if not clauses:
        raise JQLError("Error in the JQL Query: the query has no clause.")
    return JQLQuery(tuple(clauses), order_by, descending)


class JiraServer(LocalHTTPServer):
    """In-memory Jira with basic auth, a JQL subset and fault injection.

    Args:
        username: The only user that may log in.
        token: That user's API token.
        projects: Project keys that accept issues.
        issue_types: Issue type names that projects accept.
        users: Assignee names or account ids that exist; None accepts any.
        deployment_type: "Server" or "Cloud", as returned by serverInfo.
    """

    def __init__(
        self,
        *,
        username: str = "bot@example.com",
        token: str = "jira-test-token",
        projects: tuple[str, ...] = ("OPS",),
        issue_types: tuple[str, ...] = ("Task", "Bug"),
        users: set[str] | None = None,
        deployment_type: str = "Server",
    ) -> None:
        super().__init__()
        self.username = username
        self.token = token
        self.projects = projects
        self.issue_types = issue_types
        self.users = users
        self.deployment_type = deployment_type
        self.issues: dict[str, dict[str, Any]] = {}
        self._issue_ids = itertools.count(10001)
        self._key_numbers = {project: itertools.count(1) for project in projects}
        self._routes: dict[tuple[str, str], Callable[[RecordedRequest], Response]] = {
            ("GET", "serverInfo"): self._server_info,
            ("GET", "myself"): self._myself,
            ("GET", "field"): lambda request: Response(200, FIELDS),
            ("GET", "search"): self._search,
            ("GET", "search/jql"): self._search_jql,
            ("POST", "issue"): self._create_issue,
        }

    def error_body(self, status: int, message: str) -> Any:
        return {"errorMessages": [message], "errors": {}}

    def _error(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    def _is_authorized(self, request: RecordedRequest) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, token = decoded.partition(":")
        return hmac.compare_digest(user, self.username) and hmac.compare_digest(
            token, self.token
        )

    def handle(self, request: RecordedRequest) -> Response:
        match = API_PATH.match(request.path)
        if match is None:
            return self._error(404, f"No Jira resource at {request.path}.")
        if not self._is_authorized(request):
            response = self._error(
                401,
                "You are not authenticated. Authentication required to perform "
                "this operation.",
            )
            response.headers["WWW-Authenticate"] = 'Basic realm="protected-area"'
            return response

        resource = match.group("resource")
        route = self._routes.get((request.method, resource))
        if route is not None:
            return route(request)
        issue_match = ISSUE_PATH.match(resource)
        if request.method == "GET" and issue_match is not None:
            return self._get_issue(issue_match.group("key"))
        return self._error(404, f"No {request.method} handler for {resource!r}.")

    def _server_info(self, request: RecordedRequest) -> Response:
        is_cloud = self.deployment_type == "Cloud"
        version = [1001, 0, 0] if is_cloud else [9, 12, 2]
        return Response(
            200,
            {
                "baseUrl": self.url,
                "version": ".".join(map(str, version)),
                "versionNumbers": version,
                "deploymentType": self.deployment_type,
                "buildNumber": 912002,
                "serverTitle": "Local test Jira",
            },
        )

    def _myself(self, request: RecordedRequest) -> Response:
        return Response(
            200,
            {
                "self": f"{self.url}/rest/api/2/user?username={self.username}",
                "name": self.username,
                "accountId": f"account-{self.username}",
                "emailAddress": self.username,
                "displayName": self.username,
                "active": True,
            },
        )

    def _matching_issues(self, request: RecordedRequest) -> list[dict[str, Any]]:
        jql = request.query.get("jql", [""])[0]
        query = parse_jql(jql)
        found = []
        for issue in self.issues.values():
            fields = issue["fields"]
            values = {
                "project": [fields["project"]["key"]],
                "labels": fields["labels"],
                "key": [issue["key"]],
            }
            if all(value in values[name] for name, value in query.clauses):
                found.append(issue)
        # Keys and creation times both grow with insertion order here.
        if query.descending:
            found.reverse()
        return found

    def _search(self, request: RecordedRequest) -> Response:
        try:
            found = self._matching_issues(request)
        except JQLError as exc:
            return self._error(400, str(exc))
        start = int(request.query.get("startAt", ["0"])[0])
        limit = int(request.query.get("maxResults", ["50"])[0])
        page = found[start : start + limit]
        return Response(
            200,
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": limit,
                "total": len(found),
                "issues": page,
            },
        )

    def _search_jql(self, request: RecordedRequest) -> Response:
        try:
            found = self._matching_issues(request)
        except JQLError as exc:
            return self._error(400, str(exc))
        limit = int(request.query.get("maxResults", ["50"])[0])
        return Response(200, {"issues": found[:limit], "isLast": len(found) <= limit})

    def _get_issue(self, key: str) -> Response:
        issue = self.issues.get(key)
        if issue is None:
            return self._error(
                404, "Issue does not exist or you do not have permission to see it."
            )
        return Response(200, issue)

    def _validate_fields(self, fields: dict[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        project = fields.get("project") or {}
        if project.get("key") not in self.projects:
            errors["project"] = "valid project is required"
        issue_type = fields.get("issuetype") or {}
        if issue_type.get("name") not in self.issue_types:
            errors["issuetype"] = "valid issue type is required"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        for label in fields.get("labels") or []:
            if not isinstance(label, str) or re.search(r"\s", label):
                errors["labels"] = (
                    f"The label '{label}' contains spaces which is invalid."
                )
        priority = fields.get("priority")
        if priority is not None and priority.get("name") not in DEFAULT_PRIORITIES:
            errors["priority"] = f"The priority selected is invalid: {priority!r}."
        assignee = fields.get("assignee")
        if assignee is not None:
            user = assignee.get("accountId") or assignee.get("name")
            if self.users is not None and user not in self.users:
                errors["assignee"] = f"User '{user}' does not exist."
        return errors

    def _create_issue(self, request: RecordedRequest) -> Response:
        try:
            body = request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._error(400, "Unexpected character in the request body.")
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return self._error(400, "The request body has no 'fields' object.")
        errors = self._validate_fields(fields)
        if errors:
            return Response(400, {"errorMessages": [], "errors": errors})

        project_key = fields["project"]["key"]
        issue_id = str(next(self._issue_ids))
        key = f"{project_key}-{next(self._key_numbers[project_key])}"
        link = f"{self.url}/rest/api/2/issue/{issue_id}"
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        self.issues[key] = {
            "id": issue_id,
            "key": key,
            "self": link,
            "fields": {
                "summary": fields["summary"],
                "description": fields.get("description"),
                "labels": list(fields.get("labels") or []),
                "project": {"key": project_key},
                "issuetype": {"name": fields["issuetype"]["name"]},
                "priority": fields.get("priority"),
                "assignee": fields.get("assignee"),
                "created": created,
            },
        }
        return Response(201, {"id": issue_id, "key": key, "self": link})
