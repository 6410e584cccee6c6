"""The `webhook-gateway` command.

Prefect reads its settings when it is first imported, so this module imports the
gateway (and with it Prefect) only after `up` has chosen the API URL.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from webhook_gateway.cli_admin import AdminCommandError, add_admin_commands

if TYPE_CHECKING:
    from webhook_gateway.settings import GatewaySettings

__all__ = ["main"]

logger = logging.getLogger("webhook_gateway.cli")

LOCAL_PREFECT_PORT = 4200
PREFECT_START_TIMEOUT_SECONDS = 90
CHILD_STOP_TIMEOUT_SECONDS = 20


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    # Commands that print a result keep stderr quiet unless asked.
    quiet = args.handler not in (_command_up, _command_serve, _command_dispatch)
    _configure_logging(
        args.log_level or ("WARNING" if quiet else "INFO"), args.log_format
    )
    if args.routes:
        os.environ["WEBHOOK_GATEWAY_ROUTES_FILE"] = str(Path(args.routes).resolve())
    try:
        return int(args.handler(args) or 0)
    except (_CommandError, AdminCommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


class _CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-gateway",
        description="Inbound webhooks for open-source Prefect.",
    )
    parser.add_argument(
        "--routes",
        help="routes YAML file (default: $WEBHOOK_GATEWAY_ROUTES_FILE, "
        "else the bundled demo routes)",
    )
    parser.add_argument(
        "--log-level",
        help="logging level (default: INFO for up, serve and dispatch, else WARNING)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log line format (default: $WEBHOOK_GATEWAY_LOG_FORMAT, else text)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run everything locally: Prefect server, served flows and the gateway",
    )
    up.add_argument("--port", type=int, help="gateway port (default 8000)")
    up.set_defaults(handler=_command_up)

    serve = commands.add_parser(
        "serve", help="run only the gateway against $PREFECT_API_URL"
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.set_defaults(handler=_command_serve)

    curl = commands.add_parser(
        "curl", help="print a curl command with a valid signature for a route"
    )
    curl.add_argument("route", help="route name")
    source = curl.add_mutually_exclusive_group()
    source.add_argument("--data", help="body to send (default: the route's example)")
    source.add_argument("--file", help="file whose bytes are the body")
    source.add_argument(
        "--handshake",
        "--url-check",
        action="store_true",
        help="send the platform's handshake instead of an event: GitHub ping, "
        "Feishu url_verification or the WeCom GET URL check",
    )
    curl.set_defaults(handler=_command_curl)

    routes = commands.add_parser("routes", help="list the routes with their URLs")
    routes.set_defaults(handler=_command_routes)

    dispatch = commands.add_parser(
        "dispatch", help="run only the dispatcher, without serving HTTP"
    )
    dispatch.set_defaults(handler=_command_dispatch)

    database = commands.add_parser("db", help="inbox schema migrations")
    database_commands = database.add_subparsers(required=True, metavar="ACTION")
    upgrade = database_commands.add_parser(
        "upgrade", help="migrate the inbox to the newest schema, keeping its data"
    )
    upgrade.add_argument("revision", nargs="?", default="head", help="target (head)")
    upgrade.set_defaults(handler=_command_db_upgrade)
    current = database_commands.add_parser("current", help="print the inbox revision")
    current.set_defaults(handler=_command_db_current)

    add_admin_commands(commands)
    return parser


def _configure_logging(level: str, log_format: str | None) -> None:
    from webhook_gateway.logs import configure_logging

    chosen = log_format or os.environ.get("WEBHOOK_GATEWAY_LOG_FORMAT", "text")
    try:
        configure_logging(level, chosen)
    except ValueError as exc:
        raise SystemExit(f"error: WEBHOOK_GATEWAY_LOG_FORMAT: {exc}") from None


def _load_settings(args: argparse.Namespace) -> GatewaySettings:
    from webhook_gateway.settings import get_settings

    settings = get_settings()
    overrides = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
        )
        if value is not None
    }
    settings = settings.model_copy(
        update={"home": settings.home.resolve(), **overrides}
    )
    os.environ["WEBHOOK_GATEWAY_HOME"] = str(settings.home)
    return settings


def _build_routes(settings: GatewaySettings):  # type: ignore[no-untyped-def]
    from webhook_gateway.config import ConfigError, load_config
    from webhook_gateway.registry import build_routes

    if settings.routes_file is None:
        _ensure_demo_secrets(settings.home)
    try:
        return build_routes(load_config(settings.routes_file))
    except ConfigError as exc:
        raise _CommandError(str(exc)) from None


def _require_prefect_api_url() -> None:
    # Without it, Prefect's client starts a temporary server of its own, which no
    # worker serves, so every event would wait for a deployment that never exists.
    if not os.environ.get("PREFECT_API_URL"):
        raise _CommandError(
            "PREFECT_API_URL is not set; point it at your Prefect server, for "
            "example http://127.0.0.1:4200/api, or run 'webhook-gateway up' to "
            "start a local one"
        )


def _command_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from webhook_gateway.app import create_app
    from webhook_gateway.config import ConfigError

    _require_prefect_api_url()
    settings = _load_settings(args)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        raise _CommandError(str(exc)) from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,
    )
    return 0


def _command_dispatch(args: argparse.Namespace) -> int:
    import asyncio

    from webhook_gateway.dispatcher import Dispatcher
    from webhook_gateway.inbox import Inbox, create_inbox_engine

    _require_prefect_api_url()
    settings = _load_settings(args)
    settings.home.mkdir(parents=True, exist_ok=True)
    inbox = Inbox(create_inbox_engine(settings.effective_database_url))
    inbox.upgrade_schema()
    dispatcher = Dispatcher(inbox, settings)

    async def run_until_signalled() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, dispatcher.stop)
        await dispatcher.run()

    try:
        asyncio.run(run_until_signalled())
    finally:
        inbox.engine.dispose()
    return 0


def _command_db_upgrade(args: argparse.Namespace) -> int:
    from webhook_gateway.inbox import create_inbox_engine
    from webhook_gateway.migrations import current_revision, upgrade_database

    settings = _load_settings(args)
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_inbox_engine(settings.effective_database_url)
    try:
        upgrade_database(engine, args.revision)
        print(f"inbox at revision {current_revision(engine)}")
    finally:
        engine.dispose()
    return 0


def _command_db_current(args: argparse.Namespace) -> int:
    from webhook_gateway.inbox import create_inbox_engine
    from webhook_gateway.migrations import current_revision, head_revision

    settings = _load_settings(args)
    engine = create_inbox_engine(settings.effective_database_url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    print(f"inbox at revision {current or 'none'}; newest is {head_revision()}")
    return 0


def _command_curl(args: argparse.Namespace) -> int:
    from webhook_gateway.signing import SigningError, signed_curl

    settings = _load_settings(args)
    routes = _build_routes(settings)
    route = routes.get(args.route)
    if route is None:
        raise _CommandError(f"no route named {args.route!r}; routes: {sorted(routes)}")
    body: bytes | None = None
    if args.data is not None:
        body = args.data.encode("utf-8")
    elif args.file is not None:
        try:
            body = Path(args.file).read_bytes()
        except OSError as exc:
            raise _CommandError(f"cannot read --file {args.file!r}: {exc}") from None
    try:
        command = signed_curl(
            route, settings.effective_public_url, body, handshake=args.handshake
        )
    except SigningError as exc:
        raise _CommandError(str(exc)) from None
    print(command)
    return 0


def _command_routes(args: argparse.Namespace) -> int:
    settings = _load_settings(args)
    routes = _build_routes(settings)
    for name, route in routes.items():
        print(
            f"{name}\t{settings.effective_public_url}/hooks/{name}\t"
            f"scheme={route.config.scheme}\tdeployment={route.config.deployment}"
        )
    return 0


def _command_up(args: argparse.Namespace) -> int:
    settings = _load_settings(args)
    settings.home.mkdir(parents=True, exist_ok=True)
    defaults: list[str] = []
    children: list[subprocess.Popen[bytes]] = []

    def stop_children(*_args: object) -> None:
        # `uv run` forwards the terminal's Ctrl+C, so a second SIGINT often follows
        # the first. Ignoring it lets the ordered shutdown below finish.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # Newest first: the runner and its flow-run processes stop while the Prefect
        # server is still up to record their final states, then the server stops.
        for child in reversed(children):
            _stop_process_group(child)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        api_url = _ensure_prefect_server(settings.home, children, defaults)
        os.environ["PREFECT_API_URL"] = api_url
        if settings.routes_file is None:
            defaults.append(
                "bundled demo routes (webhook_gateway/examples/routes.yaml)"
            )
            defaults.extend(_ensure_demo_secrets(settings.home))
        if not settings.database_url:
            defaults.append(f"inbox: SQLite {settings.effective_database_url}")
        defaults.extend(_describe_flow_defaults())

        runner_env = {
            **os.environ,
            "PREFECT_RUNNER_POLL_FREQUENCY": os.environ.get(
                "PREFECT_RUNNER_POLL_FREQUENCY", "2"
            ),
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "flows.serve"],
                env=runner_env,
                start_new_session=True,
            )
        )

        import uvicorn

        from webhook_gateway.app import create_app
        from webhook_gateway.config import ConfigError

        try:
            app = create_app(settings)
        except ConfigError as exc:
            raise _CommandError(str(exc)) from None
        routes = app.state.gateway.routes
        _print_banner(settings, api_url, routes, defaults)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            log_config=None,
        )
    finally:
        stop_children()
    return 0


def _stop_process_group(child: subprocess.Popen[bytes]) -> None:
    """Terminate a child started in its own session, with everything it started.

    The children get their own sessions, so a Ctrl+C in the terminal reaches only
    `up`, which then stops them in order instead of all at once.
    """
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=CHILD_STOP_TIMEOUT_SECONDS)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        logger.warning(
            "process %d did not stop within %d s; killing it",
            child.pid,
            CHILD_STOP_TIMEOUT_SECONDS,
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


def _prefect_is_healthy(api_url: str) -> bool:
    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _ensure_prefect_server(
    home: Path, children: list[subprocess.Popen[bytes]], defaults: list[str]
) -> str:
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if not _prefect_is_healthy(configured):
            raise _CommandError(
                f"PREFECT_API_URL={configured} is not healthy at /health; start that "
                "server or unset PREFECT_API_URL to run a local one"
            )
        print(f"Using the Prefect server at {configured}")
        return configured

    local_url = f"http://127.0.0.1:{LOCAL_PREFECT_PORT}/api"
    if _prefect_is_healthy(local_url):
        print(f"Reusing the Prefect server already running at {local_url}")
        return local_url

    log_path = home / "prefect-server.log"
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(home / "prefect")),
    }
    print(f"Starting a local Prefect server at {local_url} (log: {log_path})")
    with log_path.open("ab") as log_file:
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(LOCAL_PREFECT_PORT),
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + PREFECT_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if children[-1].poll() is not None:
            raise _CommandError(f"the Prefect server exited; see {log_path}")
        if _prefect_is_healthy(local_url):
            defaults.append(
                f"Prefect: local server with SQLite in {env['PREFECT_HOME']}"
            )
            return local_url
        time.sleep(1)
    raise _CommandError(
        f"the Prefect server did not become healthy within "
        f"{PREFECT_START_TIMEOUT_SECONDS} s; "
        f"see {log_path}"
    )


def _ensure_demo_secrets(home: Path) -> list[str]:
    """Generate values for unset demo secrets, keep them in `home`, and describe them."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "demo-secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition("=")
            if name and value:
                stored[name] = value
    notes = []
    for name in ("DINGTALK_APP_SECRET", "SUPPLIER_HMAC_SECRET", "FEEDBACK_HMAC_SECRET"):
        if os.environ.get(name):
            continue
        stored.setdefault(name, secrets.token_urlsafe(24))
        os.environ[name] = stored[name]
        notes.append(f"{name}: generated demo secret stored in {path}")
    if notes:
        path.write_text(
            "".join(f"{k}={v}\n" for k, v in stored.items()), encoding="utf-8"
        )
        path.chmod(0o600)
    return notes


# Flow blocks and the embedded default each one replaces:
# (block class path, block name, embedded default).
_FLOW_BLOCKS = (
    ("blocks.database:MySQLCredentials", "records-db", "records in SQLite"),
    ("blocks.llm:LLMCredentials", "llm", "offline rule parser and sentiment analyzer"),
    ("blocks.jira:JiraCredentials", "jira", "delay tickets in a local ticket table"),
    (
        "blocks.jira:JiraCredentials",
        "jira-service",
        "feedback tickets in a local table",
    ),
    ("blocks.tms:TMSCredentials", "tms", "a shipments table with demo shipments"),
    ("blocks.smtp:SMTPCredentials", "smtp", "customer notices to a local outbox"),
    ("blocks.feishu:FeishuBotCredentials", "feishu-product", "a local Feishu outbox"),
)


def _describe_flow_defaults() -> list[str]:
    """Check which flow blocks exist on the Prefect server and list the defaults.

    The flows make the same check when they run, so a block saved later takes
    effect from the next run on.
    """
    import importlib

    from flows.tasks.storage import load_block

    lines = []
    for class_path, name, default in _FLOW_BLOCKS:
        module_name, _, class_name = class_path.partition(":")
        block_class = getattr(importlib.import_module(module_name), class_name)
        try:
            block = load_block(block_class, name)
        except (ValueError, httpx.HTTPError) as exc:
            lines.append(f"{default} (block {name!r} could not be read: {exc})")
            continue
        if block is None:
            lines.append(
                f"{default} (no {block_class.get_block_type_name()} block "
                f"named {name!r})"
            )
    return lines


def _print_banner(
    settings: GatewaySettings,
    api_url: str,
    routes: dict,
    defaults: list[str],  # type: ignore[type-arg]
) -> None:
    from webhook_gateway.dispatcher import prefect_ui_url
    from webhook_gateway.signing import signed_curl

    lines = ["", "Embedded defaults in use:"]
    lines += [f"  - {item}" for item in defaults]
    lines += ["", f"Prefect UI: {prefect_ui_url() or api_url}", "", "Routes:"]
    for name, route in routes.items():
        lines.append(f"  {name}: {settings.effective_public_url}/hooks/{name}")
        lines.append("    try it (signature valid for the scheme's time window):")
        lines.append(f"    {signed_curl(route, settings.effective_public_url)}")
    lines += [
        "",
        f"Event status: {settings.effective_public_url}/events/<id from the answer>",
        "Press Ctrl+C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
