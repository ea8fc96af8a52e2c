"""``python -m trio_mcp_sessions serve module:server`` — the command line."""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, get_args

import trio
from hypercorn.config import Config

from ._auth._config import DEFAULT_FAILED_VERIFICATIONS, ResourceServer
from ._interface import ReplyMode
from ._manager import CallLimits, EvictionPolicy, SessionLimits
from ._manager._limits import DISCOVER_LIMIT, KeyedLimit, positive_seconds
from ._options import ServerOptions
from ._protocol._jsonrpc import InputLimits
from ._protocol._request_state import MAX_INPUT_BYTES, MAX_PENDING, RequestStateCodec
from ._ratelimit import RateLimit
from ._serve import BACKLOG, BIND, GRACEFUL_TIMEOUT, HEADER_TIMEOUT, serve
from ._server._server import McpServer
from ._stateless._listen import ListenLimits, ListenPolicy
from ._transport._asgi import AppArguments, StreamableHTTPApp
from ._transport._http import HostPolicy

if TYPE_CHECKING:
    from ._auth._types import TokenVerifier

__all__ = ["listen_limits_from", "load_target", "main", "options_from", "request_states_from"]


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    return True


def load_target(spec: str) -> McpServer | StreamableHTTPApp:
    """Load ``module:attr`` or ``path/to/file.py:attr`` (a server, an app, or a factory)."""
    module_name, _sep, attr = spec.partition(":")
    attr = attr or "server"
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise SystemExit(f"error: {module_name}: no such file (the target is FILE.py:NAME)")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise SystemExit(f"error: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # the module was found; something it imports was not: its traceback
            raise SystemExit(
                f"error: no module named {module_name!r} "
                "(the target is MODULE:NAME or FILE.py:NAME)"
            ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SystemExit(f"error: {module_name} has no {attr!r}") from None
    if callable(target) and not isinstance(target, (McpServer, StreamableHTTPApp)):
        target = target()
    if not isinstance(target, (McpServer, StreamableHTTPApp)):
        raise SystemExit(f"error: {spec} is neither an McpServer nor a StreamableHTTPApp")
    return target


def _rate(text: str, what: str = "CREATIONS") -> RateLimit:
    """``"10/60"`` → at most 10 creations per 60 seconds."""
    count, sep, window = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return RateLimit(int(count), float(window))
    except (TypeError, ValueError) as exc:
        detail = f": {exc}" if str(exc) else ""
        raise argparse.ArgumentTypeError(
            f"expected {what}/SECONDS such as 10/60, got {text!r}{detail}"
        ) from None


def _call_rate(text: str) -> RateLimit:
    """``"100/60"`` → at most 100 requests per 60 seconds."""
    return _rate(text, "CALLS")


def _call_rate_or_off(text: str) -> RateLimit | None:
    """A rate as :func:`_call_rate`, or ``off`` for none."""
    return None if text.strip().lower() == "off" else _call_rate(text)


def _named_rate(text: str) -> tuple[str, RateLimit]:
    """``"search=10/1"`` → (``"search"``, at most 10 calls per second)."""
    name, sep, rate = text.rpartition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=CALLS/SECONDS such as search=10/1, got {text!r}"
        )
    return name.strip(), _call_rate(rate)


def _keyed_limits(
    total: list[tuple[str, RateLimit]] | None,
    per_client: list[tuple[str, RateLimit]] | None,
    flag: str,
) -> dict[str, KeyedLimit]:
    """``{name: KeyedLimit}`` from a ``--X-rate-limit`` and a ``--X-rate-limit-per-client`` list."""
    limits: dict[str, dict[str, RateLimit]] = {}
    for suffix, given in (("", total), ("-per-client", per_client)):
        field = "per_client" if suffix else "total"
        for name, rate in given or ():
            if field in limits.setdefault(name, {}):
                raise SystemExit(f"error: --{flag}-rate-limit{suffix}: {name!r} given twice")
            limits[name][field] = rate
    return {name: KeyedLimit(**rates) for name, rates in limits.items()}


async def _open_stores(
    args: argparse.Namespace, stack: contextlib.AsyncExitStack, nursery: trio.Nursery
) -> AppArguments:
    """Open the stores the command line asks for; they close with *stack*."""
    if args.sqlite:
        from ._stores._sqlite import SqliteEventStore, SqliteSessionStore

        # A lock held by another process waits no longer than a store call may take.
        events = SqliteEventStore(args.sqlite, busy_timeout=args.store_timeout)
        stack.push_async_callback(events.aclose)
        sessions = SqliteSessionStore(args.sqlite, busy_timeout=args.store_timeout)
        stack.push_async_callback(sessions.aclose)
        return {"event_store": events, "session_store": sessions}
    from ._stores._redis import (
        RedisBroadcast,
        RedisEventStore,
        RedisRateLimiter,
        RedisSessionStore,
        open_redis,
    )

    client = await open_redis(args.redis, nursery)
    prefix = args.store_prefix
    stores: AppArguments = {
        "event_store": RedisEventStore(client, prefix=prefix),
        "session_store": RedisSessionStore(client, prefix=prefix),
        # List changes and resource updates reach the listeners of every instance.
        "relay": RedisBroadcast(client, prefix=prefix),
    }
    if args.rate_limit or args.rate_limit_per_client:
        stores["rate_limiter"] = RedisRateLimiter(
            client,
            global_limit=args.rate_limit,
            per_client=args.rate_limit_per_client,
            prefix=prefix,
        )
    if _call_limits_given(args):
        # The call budgets in their own keys; without these flags they stay
        # local (a Redis round trip per request is not free).
        stores["call_rate_limiter"] = RedisRateLimiter(client, prefix=prefix)
    return stores


def _call_limits_given(args: argparse.Namespace) -> bool:
    """Whether any call budget was asked for on the command line."""
    return (
        any(
            getattr(args, name) is not None
            for name in (
                "call_rate_limit",
                "call_rate_limit_per_client",
                "tool_rate_limit",
                "tool_rate_limit_per_client",
                "method_rate_limit",
                "method_rate_limit_per_client",
                "discover_rate_limit",
            )
        )
        or args.discover_rate_limit_per_client != DISCOVER_LIMIT.per_client
    )


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (not the whole usage of some sixty options), status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


class _DefaultsHelp(argparse.HelpFormatter):
    """Each option's help says its default, unless it says one already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" not in text
            and action.default not in (None, argparse.SUPPRESS, False)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


#: The options that apply to any target (a server, or an app built in code).
_SERVE_OPTIONS: Final = frozenset(
    {
        "command",
        "target",
        "bind",
        "graceful_timeout",
        "backlog",
        "header_timeout",
        "gc_freeze",
        "log_level",
        "certfile",
        "keyfile",
    }
)


def _parser() -> argparse.ArgumentParser:
    # Every default is read from where it lives (ServerOptions, SessionLimits, ...).
    options = ServerOptions()
    defaults = options.limits
    parser = _Parser(
        prog="python -m trio_mcp_sessions",
        description="Serve an MCP server over Streamable HTTP on Hypercorn's trio worker.",
    )
    from . import __version__  # the package is imported by the time its CLI is

    parser.add_argument("--version", action="version", version=f"trio-mcp-sessions {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "serve",
        help="serve an McpServer (module:attr or file.py:attr)",
        formatter_class=_DefaultsHelp,
        description="Serve an McpServer, or a StreamableHTTPApp built in code (then only "
        "--bind, --graceful-timeout, --backlog, --header-timeout, --certfile/--keyfile, "
        "--gc-freeze and --log-level apply; the app's own options are set where it is built).",
    )
    run.add_argument("target", help="module:attr or path/to/file.py:attr")
    run.add_argument("--bind", action="append", help=f"host:port (repeatable; default {BIND})")
    run.add_argument("--path", default=options.path, help=f"endpoint path (default {options.path})")
    run.add_argument(
        "--reply-mode",
        choices=get_args(ReplyMode),
        default=options.reply_mode,
        help=f"default {options.reply_mode}",
    )
    run.add_argument(
        "--max-sessions", type=int, default=defaults.max_sessions, help="live sessions at most"
    )
    run.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout, help="seconds")
    run.add_argument("--init-timeout", type=float, default=defaults.init_timeout, help="seconds")
    run.add_argument(
        "--eviction",
        choices=[p.value for p in EvictionPolicy],
        default=defaults.eviction.value,
        help="at the session cap (default least_recently_active)",
    )
    run.add_argument("--max-lifetime", type=float, default=None, help="seconds (default none)")
    run.add_argument(
        "--eviction-wait",
        type=float,
        default=defaults.eviction_wait,
        help="seconds a creation waits for its evicted victim to close",
    )
    run.add_argument(
        "--rate-limit", type=_rate, default=None, help="global creation limit, e.g. 100/60"
    )
    run.add_argument(
        "--rate-limit-per-client",
        type=_rate,
        default=None,
        help="creation limit per client address, e.g. 10/60",
    )
    run.add_argument(
        "--call-rate-limit",
        type=_call_rate,
        default=None,
        help="2026-07-28 requests from all clients, e.g. 1000/60 (server/discover has its own)",
    )
    run.add_argument(
        "--call-rate-limit-per-client",
        type=_call_rate,
        default=None,
        help="2026-07-28 requests per client key, e.g. 100/60 (over it: 429)",
    )
    calls = options.call_limits
    run.add_argument(
        "--max-inflight",
        type=int,
        default=calls.max_inflight,
        help="POSTs (both eras) running at once, for all clients; more get 503 before their "
        "body is read",
    )
    run.add_argument(
        "--max-inflight-per-client",
        type=int,
        default=calls.max_inflight_per_client,
        help="POSTs one client key may have running at once; more get 429 (default: no cap)",
    )
    run.add_argument(
        "--inflight-queue",
        type=int,
        default=calls.max_inflight_queued,
        help="requests that may wait in line for a slot at --max-inflight (default 0: none)",
    )
    run.add_argument(
        "--max-inflight-discover",
        type=int,
        default=calls.max_inflight_discover,
        help="server/discover probes answered at once (their own pool; more get 503)",
    )
    run.add_argument(
        "--inflight-queue-timeout",
        type=float,
        default=calls.inflight_queue_timeout,
        help="seconds a request may wait in that line before its 503",
    )
    for flag, what, example in (
        ("tool", "tools/call of one tool", "search=10/1"),
        ("method", "one 2026-07-28 method", "resources/read=50/1"),
    ):
        run.add_argument(
            f"--{flag}-rate-limit",
            type=_named_rate,
            action="append",
            metavar="NAME=CALLS/SECONDS",
            help=f"{what} from all clients, e.g. {example} (repeatable)",
        )
        run.add_argument(
            f"--{flag}-rate-limit-per-client",
            type=_named_rate,
            action="append",
            metavar="NAME=CALLS/SECONDS",
            help=f"{what} per client key (repeatable)",
        )
    discover = DISCOVER_LIMIT.per_client
    assert discover is not None  # the default is per client key
    run.add_argument(
        "--discover-rate-limit",
        type=_call_rate,
        default=None,
        help="server/discover from all clients (default none)",
    )
    run.add_argument(
        "--discover-rate-limit-per-client",
        type=_call_rate_or_off,
        default=discover,
        metavar="CALLS/SECONDS|off",
        help=f"server/discover per client key (default {discover.max_creations}/"
        f"{discover.window:g}; it is never charged to the call budget)",
    )
    run.add_argument(
        "--max-inflight-per-session",
        type=int,
        default=defaults.max_inflight_per_session,
        help="requests one session may have running at once (more get 429)",
    )
    run.add_argument(
        "--write-timeout",
        type=float,
        default=defaults.write_timeout,
        help="seconds a response may take nothing before its reader is dropped",
    )
    run.add_argument(
        "--max-batch-size",
        type=int,
        default=options.input_limits.max_batch_size,
        help="messages in one JSON-RPC batch (2025-03-26) at most; larger get 400",
    )
    listen = ListenLimits()
    run.add_argument(
        "--max-listen-streams",
        type=int,
        default=listen.max_streams,
        help="subscriptions/listen streams (2026-07-28) open at once; more get 503",
    )
    run.add_argument(
        "--listen-buffer",
        type=int,
        default=listen.max_buffered_events,
        help="notifications a listen stream may have unread before it is ended",
    )
    run.add_argument(
        "--max-listen-streams-per-client",
        type=int,
        default=listen.max_streams_per_client,
        help="listen streams one client key may have open at once (over it: --listen-policy)",
    )
    run.add_argument(
        "--listen-max-lifetime",
        type=float,
        default=listen.max_lifetime,
        help="seconds a listen stream stays open before it is ended gracefully (0: no limit)",
    )
    run.add_argument(
        "--listen-policy",
        choices=[p.value for p in ListenPolicy],
        default=listen.policy.value,
        help="at a listen-stream cap: refuse the new stream (503) or end the least "
        "recently delivered one gracefully (default reject)",
    )
    run.add_argument(
        "--request-state-keys",
        metavar="FILE",
        default=None,
        help="file of base64 keys (32+ bytes each, one per line, the first signs) that seal "
        "2026-07-28 requestState; every instance behind one endpoint needs the same file "
        "(default: a random key per process)",
    )
    run.add_argument(
        "--request-state-max-pending",
        type=float,
        default=MAX_PENDING,
        help="seconds one 2026-07-28 request may wait for input across all its "
        "input-required rounds (then its client must start it again)",
    )
    run.add_argument(
        "--max-input-response-bytes",
        type=int,
        default=MAX_INPUT_BYTES,
        help="characters of JSON the inputResponses of one retry may carry (more get -32602)",
    )
    run.add_argument(
        "--metrics-path", default=options.metrics_path, help="serve Prometheus metrics here"
    )
    stores = run.add_mutually_exclusive_group()
    stores.add_argument(
        "--sqlite",
        metavar="PATH",
        default=None,
        help="keep events and sessions in this SQLite file (sessions survive a restart)",
    )
    stores.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="keep events and sessions in Redis (redis://host:port/db), shared by instances; "
        "creation rate limits, the call budgets given by flags and change notifications "
        "(pub/sub) are then shared too",
    )
    run.add_argument("--store-prefix", default="mcp", help="Redis key prefix (default mcp)")
    run.add_argument(
        "--store-timeout",
        type=float,
        default=options.store_timeout,
        help="seconds a store call may take",
    )
    run.add_argument(
        "--store-failure-threshold",
        type=int,
        default=options.store_failure_threshold,
        help="failures in a row after which a store counts as down and calls fail at once",
    )
    run.add_argument(
        "--store-probe-after",
        type=float,
        default=options.store_probe_after,
        help="seconds before a store that is down is tried again",
    )
    run.add_argument("--no-event-store", action="store_true", help="disable SSE resumption")
    run.add_argument("--allowed-host", action="append", help="allowed Host value (repeatable)")
    run.add_argument("--allowed-origin", action="append", help="allowed Origin (repeatable)")
    run.add_argument(
        "--max-body-bytes",
        type=int,
        default=options.max_body_bytes,
        help="larger POST bodies get 413",
    )
    run.add_argument("--retry-ms", type=int, default=options.retry_ms, help="SSE retry hint (ms)")
    run.add_argument("--graceful-timeout", type=float, default=GRACEFUL_TIMEOUT, help="seconds")
    run.add_argument(
        "--backlog",
        type=int,
        default=BACKLOG,
        help=f"connections the kernel may queue for accept (default {BACKLOG})",
    )
    run.add_argument(
        "--request-timeout",
        type=float,
        default=options.request_timeout,
        metavar="SECONDS",
        help="a handler may run this long without reporting progress, then it is cancelled "
        "(a tool answers isError, other methods a JSON-RPC error)",
    )
    run.add_argument(
        "--max-request-time",
        type=float,
        default=options.max_request_time,
        metavar="SECONDS",
        help="a handler may run this long at most, however often it reports progress",
    )
    run.add_argument(
        "--refusal-delay",
        type=float,
        default=options.refusal_delay,
        metavar="SECONDS",
        help="a 429 waits this long at most (never past its Retry-After) before it is sent, "
        "so a client that retries at once is slowed down (0: at once)",
    )
    run.add_argument(
        "--max-delayed-refusals",
        type=int,
        default=options.max_delayed_refusals,
        help="429s that may wait at once; more are sent at once",
    )
    run.add_argument(
        "--body-timeout",
        type=float,
        default=options.body_timeout,
        metavar="SECONDS",
        help="a POST body must arrive within this once its headers have (else 408)",
    )
    run.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        metavar="SECONDS",
        help="a connection must send a request's headers within this, and is closed "
        "after this long idle",
    )
    run.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="once serving, move what startup made out of the garbage collector's way "
        "(gc.freeze: shorter collection pauses under load; default on)",
    )
    auth = run.add_argument_group(
        "authorization (an OAuth 2.1 resource server; needs the auth extra)"
    )
    auth.add_argument(
        "--auth-resource",
        default=None,
        metavar="URL",
        help="this endpoint's public URL (https://host/mcp): requires a bearer token "
        "issued for it on every request (default off)",
    )
    auth.add_argument(
        "--auth-issuer",
        default=None,
        metavar="URL",
        help="the authorization server that issues the tokens (its issuer identifier)",
    )
    auth.add_argument(
        "--auth-scopes",
        default="",
        metavar="SCOPES",
        help="scopes every request needs, space- or comma-separated",
    )
    auth.add_argument(
        "--auth-introspection-client-id",
        default=None,
        metavar="ID",
        help="verify opaque tokens by RFC 7662 introspection as this client "
        "(default: JWTs with the issuer's keys)",
    )
    auth.add_argument(
        "--auth-introspection-secret-env",
        default="MCP_INTROSPECTION_SECRET",
        metavar="NAME",
        help="the environment variable holding that client's secret (never a flag: "
        "command lines are visible to every user of the machine)",
    )
    auth.add_argument(
        "--auth-allow-jwt-typ",
        action="store_true",
        help="accept JWTs typed JWT, not only at+jwt (Keycloak, Entra; aud still keeps "
        "ID tokens out)",
    )
    auth.add_argument(
        "--auth-filter-lists",
        action="store_true",
        help="list only the tools the caller's scopes allow",
    )
    auth.add_argument(
        "--auth-max-failed",
        type=_call_rate_or_off,
        default=DEFAULT_FAILED_VERIFICATIONS,
        metavar="FAILURES/SECONDS|off",
        help="failed verifications per client key before its requests are refused "
        f"unverified with 429 (default {DEFAULT_FAILED_VERIFICATIONS.max_creations}/"
        f"{DEFAULT_FAILED_VERIFICATIONS.window:g})",
    )
    run.add_argument("--certfile", default=None, help="serve TLS (https) with this certificate")
    run.add_argument("--keyfile", default=None, help="the certificate's private key")
    run.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=("debug", "info", "warning", "error", "critical"),
        help="the level of what is logged",
    )
    return parser


def options_from(args: argparse.Namespace) -> ServerOptions:
    """The one :class:`ServerOptions` the command line asks for (invalid values: ``error:``)."""
    try:
        return ServerOptions(
            path=args.path,
            reply_mode=args.reply_mode,
            max_body_bytes=args.max_body_bytes,
            input_limits=InputLimits(max_batch_size=args.max_batch_size),
            retry_ms=args.retry_ms,
            limits=SessionLimits(
                max_sessions=args.max_sessions,
                eviction=EvictionPolicy(args.eviction),
                idle_timeout=args.idle_timeout,
                init_timeout=args.init_timeout,
                max_lifetime=args.max_lifetime,
                eviction_wait=args.eviction_wait,
                rate_limit=args.rate_limit,
                rate_limit_per_client=args.rate_limit_per_client,
                max_inflight_per_session=args.max_inflight_per_session,
                write_timeout=args.write_timeout,
            ),
            call_limits=CallLimits(
                rate_limit=args.call_rate_limit,
                rate_limit_per_client=args.call_rate_limit_per_client,
                max_inflight=args.max_inflight,
                max_inflight_per_client=args.max_inflight_per_client,
                max_inflight_queued=args.inflight_queue,
                max_inflight_discover=args.max_inflight_discover,
                inflight_queue_timeout=args.inflight_queue_timeout,
                tool_limits=_keyed_limits(
                    args.tool_rate_limit, args.tool_rate_limit_per_client, "tool"
                ),
                method_limits=_keyed_limits(
                    args.method_rate_limit, args.method_rate_limit_per_client, "method"
                ),
                discover_limit=(
                    KeyedLimit(args.discover_rate_limit, args.discover_rate_limit_per_client)
                    if args.discover_rate_limit or args.discover_rate_limit_per_client
                    else None
                ),
            ),
            store_timeout=args.store_timeout,
            store_failure_threshold=args.store_failure_threshold,
            store_probe_after=args.store_probe_after,
            metrics_path=args.metrics_path,
            request_timeout=args.request_timeout,
            max_request_time=args.max_request_time,
            body_timeout=args.body_timeout,
            refusal_delay=args.refusal_delay,
            max_delayed_refusals=args.max_delayed_refusals,
            host_policy=HostPolicy(
                tuple(args.allowed_host) if args.allowed_host else None,
                tuple(args.allowed_origin) if args.allowed_origin else None,
            ),
        )
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def auth_from(args: argparse.Namespace) -> ResourceServer | None:
    """The :class:`ResourceServer` the ``--auth-*`` flags ask for (``None``: no authorization)."""
    if args.auth_resource is None:
        for flag in ("auth_issuer", "auth_introspection_client_id"):
            if getattr(args, flag) is not None:
                raise SystemExit(f"error: --{flag.replace('_', '-')} needs --auth-resource")
        return None
    if args.auth_issuer is None:
        raise SystemExit("error: --auth-resource needs --auth-issuer (who issues the tokens)")
    from ._auth import IntrospectionVerifier, JwtVerifier

    scopes = [s for s in args.auth_scopes.replace(",", " ").split() if s]
    try:
        verifier: TokenVerifier
        if args.auth_introspection_client_id is not None:
            secret = os.environ.get(args.auth_introspection_secret_env)
            if not secret:
                raise SystemExit(
                    f"error: --auth-introspection-client-id needs the client secret in "
                    f"the environment variable {args.auth_introspection_secret_env}"
                )
            verifier = IntrospectionVerifier(
                args.auth_issuer,
                audience=args.auth_resource,
                client_id=args.auth_introspection_client_id,
                client_secret=secret,
            )
        else:
            verifier = JwtVerifier(
                args.auth_issuer,
                audience=args.auth_resource,
                require_typ=not args.auth_allow_jwt_typ,
            )
        return ResourceServer(
            args.auth_resource,
            [args.auth_issuer],
            verifier,
            scopes=scopes,
            filter_lists=args.auth_filter_lists,
            max_failed_verifications=args.auth_max_failed,
        )
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def _freeze_startup_objects() -> None:
    """Move what startup made (modules, the server, the app) out of the collector's way.

    It lives as long as the process; frozen, a full collection walks only
    what requests made since, and under load its pauses were the other
    clients' p99 (bench modern-flood: p99 ratio 1.5-1.7 without, 1.0-1.2
    with). What this process owns is the command line's to decide, so
    :func:`serve` does not do it; call it likewise after your own startup.
    """
    gc.collect()
    gc.freeze()


def _read_keys(path: str) -> list[bytes]:
    """The key ring from a file of base64 lines (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="ascii").splitlines()
        keys = [
            base64.b64decode(line.strip(), validate=True)
            for line in lines
            if line.strip() and not line.lstrip().startswith("#")
        ]
        RequestStateCodec(keys)  # the codec's own checks: count and length
    except (OSError, UnicodeError, binascii.Error, TypeError, ValueError) as exc:
        raise SystemExit(f"error: --request-state-keys {path}: {exc}") from None
    return keys


def request_states_from(args: argparse.Namespace) -> RequestStateCodec:
    """The :class:`RequestStateCodec` the command line asks for (invalid values: ``error:``)."""
    keys = _read_keys(args.request_state_keys) if args.request_state_keys else None
    try:
        return RequestStateCodec(
            keys,
            max_pending=args.request_state_max_pending,
            max_input_bytes=args.max_input_response_bytes,
        )
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def listen_limits_from(args: argparse.Namespace) -> ListenLimits:
    """The :class:`ListenLimits` the command line asks for (invalid values: ``error:``)."""
    try:
        return ListenLimits(
            max_streams=args.max_listen_streams,
            max_buffered_events=args.listen_buffer,
            max_streams_per_client=args.max_listen_streams_per_client,
            max_lifetime=args.listen_max_lifetime or None,
            policy=ListenPolicy(args.listen_policy),
        )
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """The command line: exit status 0, or 2 with one line on stderr for an ordinary mistake."""
    try:
        return _main(argv)
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise  # argparse's own (usage errors, --help, --version)
        message = exc.code if exc.code.startswith("error: ") else f"error: {exc.code}"
        print(message, file=sys.stderr)
        return 2


def _refuse_unused_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An app built in code has its options already: a flag for them would be silently ignored."""
    defaults = parser.parse_args(["serve", args.target])
    given = [
        name
        for name, value in vars(args).items()
        if name not in _SERVE_OPTIONS and value != getattr(defaults, name, value)
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(given))
        raise SystemExit(
            f"error: {args.target} is an app built in code: {flags} would not apply to it; "
            "set them where the app is built, or serve its McpServer"
        )


def _check_extras(args: argparse.Namespace) -> None:
    """A missing optional dependency, named with the command that installs it."""
    for wanted, module, extra, option in (
        (args.redis, "coredis", "redis", "--redis"),
        (args.metrics_path, "prometheus_client", "metrics", "--metrics-path"),
        (args.auth_resource, "joserfc", "auth", "--auth-resource"),
        (args.auth_resource, "httpx", "auth", "--auth-resource"),
    ):
        if wanted and not _importable(module):
            raise SystemExit(
                f"error: {option} needs the {extra} extra: pip install 'trio-mcp-sessions[{extra}]'"
            )
    if bool(args.certfile) != bool(args.keyfile):
        raise SystemExit("error: TLS needs both --certfile and --keyfile")
    for name in ("certfile", "keyfile"):
        path = getattr(args, name)
        if path and not Path(path).is_file():
            raise SystemExit(f"error: --{name} {path}: no such file")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked module counts as missing
        return False


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A store outage is logged once, clearly, by us (store call ... failed);
    # coredis adds a traceback per failed connection attempt, which is noise.
    logging.getLogger("coredis").addFilter(_without_traceback)
    try:
        positive_seconds("header_timeout", args.header_timeout)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    _check_extras(args)
    target = load_target(args.target)
    if not isinstance(target, McpServer):
        _refuse_unused_options(parser, args)
    binds = args.bind or [BIND]
    config: Config | None = None
    if args.certfile:
        config = Config()
        config.certfile, config.keyfile = args.certfile, args.keyfile
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
    options: ServerOptions | None = None
    arguments: AppArguments = {}
    if isinstance(target, McpServer):
        options = options_from(args)
        arguments["listen_limits"] = listen_limits_from(args)
        path = options.path
        if args.no_event_store:
            arguments["event_store"] = None
        arguments["request_states"] = request_states_from(args)
        arguments["auth"] = auth_from(args)
    else:
        path = target.path

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
            if isinstance(target, McpServer) and (args.sqlite or args.redis):
                arguments.update(await _open_stores(args, stack, nursery))

            async def serve_then_stop(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(
                    target,
                    options=options,
                    bind=binds,
                    graceful_timeout=args.graceful_timeout,
                    backlog=args.backlog,
                    header_timeout=args.header_timeout,
                    config=config,
                    task_status=task_status,
                    **arguments,
                )
                nursery.cancel_scope.cancel()  # the store clients' tasks end with the server

            urls = await nursery.start(serve_then_stop)
            if args.gc_freeze:
                _freeze_startup_objects()
            for url in urls:
                print(f"Serving MCP on {url}{path} (Ctrl-C to stop)", flush=True)

    trio.run(run)
    print("Stopped.", flush=True)
    return 0
