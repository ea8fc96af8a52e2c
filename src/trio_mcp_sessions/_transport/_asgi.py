"""The Streamable HTTP transport as an ASGI application (Hypercorn's trio worker).

Every request is validated completely (Host, Origin, method, Accept,
Content-Type, size, JSON, JSON-RPC, version header, session header) before
the session manager allocates anything, so a refused request never leaves a
session, a task or a slot behind. This module is the entry, the checks every
request shares and the split between the eras: a session-era request goes on
in :mod:`._sessions`, a 2026-07-28 one in :mod:`._modern`. Which error gets
which answer is :mod:`._answers`, writing answers (JSON, SSE, noticing a gone
client) is :mod:`._replies`.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypedDict, final

import trio

from .._errors import ServiceUnavailable
from .._interface import CloseReason, ReplyMode, RequestInfo, SessionManager
from .._manager import BoundedSessionManager  # the default, built here
from .._manager._budgets import call_admission
from .._manager._inflight import InflightLimiter
from .._metrics import MetricsExporter
from .._options import DEFAULT_EVENT_STORE, ServerOptions, with_overrides
from .._protocol._era import Era, classify_other, classify_post
from .._protocol._jsonrpc import (
    INVALID_REQUEST,
    SERVER_ERROR,
    InputLimits,
    ProtocolError,
    Request,
    decode_body,
)
from .._protocol._subscriptions import LISTEN
from .._stateless import SessionlessService  # the 2026-07-28 half, built here
from . import _hypercorn_h2
from ._answers import SESSION_HEADER, _answer_for, _from_protocol_error, _HTTPError, _too_large
from ._auth import AuthGate, AuthStatistics, token_deadline
from ._http import HostPolicy, accepts, is_json_content_type, valid_authority
from ._modern import method_not_allowed, post_modern
from ._replies import _JSON, _reply_sse, _send_simple
from ._sessions import VERSION_HEADER, SseReply, delete_session, get_stream, post_session

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .._auth._config import ResourceServer
    from .._handles import HandleStore
    from .._manager import CallLimits, InflightSlot, InflightStatistics, SessionLimits
    from .._manager._broadcast import ChangeRelay
    from .._manager._budgets import CallBudgetStatistics, SharedCallLimiter
    from .._protocol._jsonrpc import Message
    from .._protocol._request_state import RequestStateCodec
    from .._ratelimit import SharedRateLimiter
    from .._serve import Connections
    from .._server._server import McpServer
    from .._stateless._listen import ListenLimits
    from .._stores._base import EventStore, SessionStore
    from ._replies import Receive, Scope, Send

__all__ = ["AppArguments", "StreamableHTTPApp", "TransportStatistics"]

logger = logging.getLogger("trio_mcp_sessions.transport")

# Early answers (413, refusals of a request with a body) must not let a
# client's late HTTP/2 DATA frame crash Hypercorn's serve(): see the module.
_hypercorn_h2.install()


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """A snapshot of the transport's counters (see :meth:`StreamableHTTPApp.statistics`).

    Attributes:
        refused_by_status: Requests answered with an HTTP error (validation,
            input limits, 404, 429, 503, ...) by status code.
        connections_cut: Connections reset because a write lasted over the
            write timeout or outlasted the grace period (only under
            :func:`serve`, which owns the connections).
        open_connections: Connections open now (only under :func:`serve`).
        inflight: The in-flight caps of POSTs (:attr:`CallLimits.max_inflight`).
        inflight_discover: The pool of ``server/discover`` probes
            (:attr:`CallLimits.max_inflight_discover`).
        refusals_delayed: 429s sent after waiting ``refusal_delay``.
        refusals_delaying: 429s waiting now (at most ``max_delayed_refusals``).
        auth: The resource server's counts (``None`` without one).
    """

    refused_by_status: dict[int, int] = field(default_factory=dict)
    connections_cut: int = 0
    open_connections: int = 0
    inflight: InflightStatistics | None = None
    inflight_discover: InflightStatistics | None = None
    refusals_delayed: int = 0
    refusals_delaying: int = 0
    auth: AuthStatistics | None = None


class AppArguments(TypedDict, total=False):
    """The keyword arguments of :class:`StreamableHTTPApp` (but *options*), for :func:`serve`.

    The live objects, then the :class:`ServerOptions` fields as overrides.
    """

    manager: SessionManager | None
    event_store: EventStore | Literal["default"] | None
    session_store: SessionStore | None
    rate_limiter: SharedRateLimiter | None
    call_rate_limiter: SharedCallLimiter | None
    principal: Callable[[Scope], str | None] | None
    auth: ResourceServer | None
    on_session_created: Callable[[str, RequestInfo], None] | None
    on_session_closed: Callable[[str, CloseReason], None] | None
    request_states: RequestStateCodec | None
    path: str | None
    reply_mode: ReplyMode | None
    max_body_bytes: int | None
    input_limits: InputLimits | None
    retry_ms: int | None
    limits: SessionLimits | None
    call_limits: CallLimits | None
    store_timeout: float | None
    store_failure_threshold: int | None
    store_probe_after: float | None
    metrics_path: str | None
    host_policy: HostPolicy | None
    relay: ChangeRelay | None
    listen_limits: ListenLimits | None
    request_timeout: float | None
    max_request_time: float | None
    body_timeout: float | None
    refusal_delay: float | None
    max_delayed_refusals: int | None


@final
class StreamableHTTPApp:
    """An MCP server on one Streamable HTTP endpoint, as an ASGI app.

    Serve it with Hypercorn's trio worker (``hypercorn --worker-class trio
    mod:app``) or with :func:`trio_mcp_sessions.serve`. The app runs its
    session manager from the ASGI lifespan, so the manager's nursery lives as
    long as the server.

    The keyword arguments named like a field of :class:`ServerOptions`
    (``path``, ``reply_mode``, ``max_body_bytes``, ``input_limits``,
    ``retry_ms``, ``limits``, ``call_limits``, ``store_timeout``,
    ``store_failure_threshold``, ``store_probe_after``, ``metrics_path``,
    ``host_policy``, ``request_timeout``, ``max_request_time``,
    ``body_timeout``) each override that field of *options* (``None``, the
    default, keeps it), so ``StreamableHTTPApp(server, path="/x")`` is
    ``StreamableHTTPApp(server, options=ServerOptions(path="/x"))``.

    Args:
        server: The :class:`McpServer` to serve (ignored for handlers when a
            *manager* is given, which already has one).
        options: The scalar settings (:class:`ServerOptions`: path, reply
            mode, body and input limits, session limits, retry hint, store
            timeouts, metrics path, host policy); their defaults live there.
        manager: Use this :class:`SessionManager` instead of building one;
            the application then runs it.
        event_store: Event store for the built-in manager (``"default"``:
            bounded, in memory; ``None`` disables resumption).
        session_store: A :class:`SessionStore` so sessions survive a restart or
            move between instances (built-in manager).
        rate_limiter: A creation rate limiter shared between instances, such
            as :class:`RedisRateLimiter` (built-in manager); when it can
            (``spend``), it shares the call budgets too.
        call_rate_limiter: Shares the call budgets of *call_limits* between
            instances (:class:`SharedCallLimiter`, e.g. a
            :class:`RedisRateLimiter`); while it is unreachable each
            instance's own windows apply.
        principal: ``fn(scope) -> str | None`` naming the authenticated
            caller (for keyed limits and session binding), when something in
            front of the app authenticates; not with *auth*.
        auth: Make this server an OAuth 2.1 resource server
            (:class:`ResourceServer`): Protected Resource Metadata, a bearer
            token verified on every request of both eras, scopes per
            method and tool; the verified caller is the principal.
        on_session_created: ``fn(session_id, RequestInfo)`` after a successful
            ``initialize`` (built-in manager).
        on_session_closed: ``fn(session_id, CloseReason)`` after every close
            (built-in manager).
        request_states: Seals the ``requestState`` of 2026-07-28
            input-required rounds (:class:`RequestStateCodec`). Instances
            behind one endpoint must share its keys; the default makes a
            random key per process.
        relay: Carries ``notify_all`` / ``notify_resource_updated`` changes to
            the other instances (built-in manager), e.g. :class:`RedisBroadcast`.
        listen_limits: The bounds of ``subscriptions/listen`` streams
            (2026-07-28): :class:`ListenLimits`.
    """

    def __init__(
        self,
        server: McpServer | None = None,
        *,
        options: ServerOptions | None = None,
        manager: SessionManager | None = None,
        event_store: EventStore | Literal["default"] | None = DEFAULT_EVENT_STORE,
        session_store: SessionStore | None = None,
        rate_limiter: SharedRateLimiter | None = None,
        call_rate_limiter: SharedCallLimiter | None = None,
        principal: Callable[[Scope], str | None] | None = None,
        auth: ResourceServer | None = None,
        on_session_created: Callable[[str, RequestInfo], None] | None = None,
        on_session_closed: Callable[[str, CloseReason], None] | None = None,
        request_states: RequestStateCodec | None = None,
        path: str | None = None,
        reply_mode: ReplyMode | None = None,
        max_body_bytes: int | None = None,
        input_limits: InputLimits | None = None,
        retry_ms: int | None = None,
        limits: SessionLimits | None = None,
        call_limits: CallLimits | None = None,
        store_timeout: float | None = None,
        store_failure_threshold: int | None = None,
        store_probe_after: float | None = None,
        metrics_path: str | None = None,
        host_policy: HostPolicy | None = None,
        relay: ChangeRelay | None = None,
        listen_limits: ListenLimits | None = None,
        request_timeout: float | None = None,
        max_request_time: float | None = None,
        body_timeout: float | None = None,
        refusal_delay: float | None = None,
        max_delayed_refusals: int | None = None,
    ) -> None:
        #: The settings in force: *options* with the keywords given applied over it.
        self.options: ServerOptions = with_overrides(
            options,
            path=path,
            reply_mode=reply_mode,
            max_body_bytes=max_body_bytes,
            input_limits=input_limits,
            retry_ms=retry_ms,
            limits=limits,
            call_limits=call_limits,
            store_timeout=store_timeout,
            store_failure_threshold=store_failure_threshold,
            store_probe_after=store_probe_after,
            metrics_path=metrics_path,
            host_policy=host_policy,
            request_timeout=request_timeout,
            max_request_time=max_request_time,
            body_timeout=body_timeout,
            refusal_delay=refusal_delay,
            max_delayed_refusals=max_delayed_refusals,
        )
        options = self.options
        self.path = options.path
        self.reply_mode: ReplyMode = options.reply_mode
        self.host_policy = options.host_policy
        self.max_body_bytes = options.max_body_bytes
        self.input_limits = options.input_limits
        self.retry_ms = options.retry_ms
        self.body_timeout = options.body_timeout
        self._delaying = 0  # 429s waiting out their refusal_delay now
        self._delayed = 0
        if auth is not None and principal is not None:
            raise TypeError(
                "pass auth or principal, not both: under a resource server the "
                "verified token names the principal"
            )
        self._principal = principal
        self._bounded: BoundedSessionManager | None = None
        if manager is None:
            if server is None:
                raise TypeError("pass an McpServer or a SessionManager")
            manager = self._bounded = BoundedSessionManager(
                server,
                options=options,
                event_store=event_store,
                session_store=session_store,
                rate_limiter=rate_limiter,
                on_session_created=on_session_created,
                on_session_closed=on_session_closed,
                relay=relay,
            )
        self.manager: SessionManager = manager
        #: Serves 2026-07-28 requests (no sessions) with *server*'s handlers;
        #: ``None`` without a server: such requests get -32022 (use a session).
        self.server = server
        self.sessionless: SessionlessService | None = (
            SessionlessService(
                server,
                request_states=request_states,
                write_timeout=options.limits.write_timeout,
                listen_limits=listen_limits,
                client_key=options.call_limits.rate_limit_key,
                request_timeout=options.request_timeout,
                max_request_time=options.max_request_time,
            )
            if server is not None
            else None
        )
        #: The budgets of 2026-07-28 requests (:class:`CallLimits`): shared
        #: through *call_rate_limiter* (or *rate_limiter*), else local windows.
        self._calls = call_admission(options, call_rate_limiter, rate_limiter)
        calls = options.call_limits
        #: The exact in-flight caps of POSTs (both eras), taken before the body.
        self._inflight = InflightLimiter(
            calls.max_inflight,
            max_per_client=calls.max_inflight_per_client,
            queue_timeout=calls.inflight_queue_timeout,
            max_queued=calls.max_inflight_queued,
        )
        #: server/discover's own pool: a full call cap never refuses a probe.
        self._discover_slots = InflightLimiter(
            calls.max_inflight_discover, what="server/discover probes"
        )
        self._client_key = calls.rate_limit_key
        #: The OAuth 2.1 resource server at the door (``None``: no authorization).
        self._auth = AuthGate(auth, server, calls.rate_limit_key, self.path) if auth else None
        if self.sessionless is not None and isinstance(manager, BoundedSessionManager):
            # The manager's broadcasts reach the listen streams too.
            manager.broadcast.add_listener(self.sessionless.listen)
        #: Seconds a connection may make no progress on a write (a client that
        #: stopped reading) before :func:`serve` cuts it: the manager's, unless
        #: *limits* is given here.
        own = None if limits is not None else getattr(manager, "limits", None)
        self.write_timeout = (own or options.limits).write_timeout
        self._connections: Connections | None = None
        self._cut_earlier = 0  # by registries no longer attached
        #: Requests answered with an HTTP error before reaching a session, by status.
        self._refused: Counter[int] = Counter()
        self.metrics_path = options.metrics_path
        self._metrics: MetricsExporter | None = None
        if self.metrics_path is not None:
            statistics = getattr(manager, "statistics", None)
            if statistics is None:
                raise TypeError("metrics_path needs a manager with statistics()")
            self._metrics = MetricsExporter(
                statistics,
                transport=self.statistics,
                listen=self.sessionless.listen.statistics if self.sessionless else None,
                sessionless=self.sessionless.statistics if self.sessionless else None,
                calls=self._calls.statistics,
            )

    def call_statistics(self) -> CallBudgetStatistics:
        """The budgets of 2026-07-28 requests: admitted, refused by budget, keys held."""
        return self._calls.statistics()

    # -- running the manager ---------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the built-in session manager until cancelled (what the ASGI lifespan does).

        A user-supplied manager is the user's to run; then this only waits.
        A resource server's verifier runs here too, first in and last out:
        sessions still closing may have requests to verify.
        """
        async with trio.open_nursery() as outer:
            verifier = self._auth.verifier_to_run if self._auth is not None else None
            verifying = trio.CancelScope()
            if verifier is not None:
                await outer.start(_run_in, verifying, verifier.run)
            try:
                async with trio.open_nursery() as nursery:
                    if self.sessionless is not None:
                        await nursery.start(self.sessionless.run)
                    if self._bounded is None:
                        task_status.started()
                        await trio.sleep_forever()
                    await nursery.start(self._bounded.run)
                    task_status.started()
            finally:
                verifying.cancel()  # it serves until cancelled: the manager returned (aclose)

    def begin_drain(self) -> None:
        """Stop admitting sessions and requests; end GET streams with a ``retry`` hint.

        Requests in flight go on; :meth:`finish_drain` ends what is left.
        """
        self.manager.begin_drain()
        if self.sessionless is not None:
            self.sessionless.begin_drain()

    def finish_drain(self) -> None:
        """End every SSE response still open with a ``retry`` hint (grace is over)."""
        self.manager.finish_drain()
        if self.sessionless is not None:
            self.sessionless.finish_drain()

    def statistics(self) -> TransportStatistics:
        """What the transport refused and cut (the manager has its own statistics)."""
        connections = self._connections
        return TransportStatistics(
            refused_by_status=dict(self._refused),
            connections_cut=self._cut_earlier + (connections.cut if connections else 0),
            open_connections=len(connections) if connections is not None else 0,
            inflight=self._inflight.statistics(),
            inflight_discover=self._discover_slots.statistics(),
            refusals_delayed=self._delayed,
            refusals_delaying=self._delaying,
            auth=self._auth.statistics() if self._auth is not None else None,
        )

    def export_handles(self, *stores: HandleStore) -> None:
        """Add these handle stores' statistics to ``metrics_path`` (a no-op without it)."""
        if self._metrics is not None:
            self._metrics.handles.extend(store.statistics for store in stores)

    # -- the write deadline ------------------------------------------------------------

    def _attach_connections(self, connections: Connections | None) -> None:
        """Count the connections :func:`serve` owns (and cuts) in :meth:`statistics`."""
        if self._connections is not None:
            self._cut_earlier += self._connections.cut
        self._connections = connections

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        started = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.run)
                started = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
                self.finish_drain()  # connections are gone by now: nothing waits any more
                if self.sessionless is not None:
                    await self.sessionless.aclose()
                if self._bounded is not None:
                    # Stop rather than cancel: idle sessions then close at once
                    # instead of each unwinding a Cancelled (50,000 sessions:
                    # 2.6 s -> 0.7 s), and run() returns by itself.
                    await self._bounded.aclose()
                else:
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            logger.exception("lifespan failed")
            if not started:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await send({"type": "lifespan.shutdown.complete"})

    # -- ASGI entry point -------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        held: list[InflightSlot] = []  # the request's in-flight slot, once it has one
        ends: list[float] = []  # a GET stream's end: its access token's expiry
        try:
            try:
                stream = await self._handle(scope, receive, send, held, ends)
            except _HTTPError as exc:
                self._refused[exc.status] += 1
                for slot in held:  # a refusal holds no slot, even while it waits
                    slot.release()
                if exc.status == 429:
                    await self._slow_down(exc.retry_after)
                await _send_simple(send, exc.status, exc.body(), [_JSON, *exc.headers])
                return
            if stream is not None:
                # Written from here, with the request's frames and headers gone: a
                # server holds one of these per open SSE response.
                await _reply_sse(
                    receive,
                    send,
                    *stream,
                    ends_at=ends[0] if ends else None,
                    retry_ms=self.retry_ms,
                )
        finally:
            for slot in held:  # the response ended, or its client left
                slot.release()

    async def _slow_down(self, retry_after: int | None) -> None:
        """Hold a 429 up to ``refusal_delay`` (never past its ``Retry-After``), if there is room.

        The wait is jittered between half of that and all of it.

        A client that retries at once, on as many connections as it likes,
        then costs one refusal per connection per delay: what a flood can
        make the server do is bounded by its connections, not by its speed.
        The waits are bounded too (``max_delayed_refusals``; beyond them the
        answer goes at once), and a waiting refusal holds no in-flight slot.
        """
        delay = min(self.options.refusal_delay, retry_after or 0)
        if delay <= 0 or self._delaying >= self.options.max_delayed_refusals:
            return
        # Jittered (half to all of it): refusals sent together would otherwise come
        # back together, one wave a second that every other client queues behind.
        delay *= random.uniform(0.5, 1.0)
        self._delaying += 1
        try:
            await trio.sleep(delay)
        finally:
            self._delaying -= 1
            self._delayed += 1

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        held: list[InflightSlot],
        ends: list[float],
    ) -> SseReply | None:
        """Validate and dispatch; an SSE answer comes back to be written by the caller."""
        path = scope.get("path", "").rstrip("/")
        is_metrics = self._metrics is not None and path == self.metrics_path
        auth = self._auth
        is_metadata = auth is not None and path in auth.metadata_paths
        if path != self.path.rstrip("/") and not is_metrics and not is_metadata:
            raise _HTTPError(404, SERVER_ERROR, "Not Found")
        headers = _headers(scope)
        server_address = (scope.get("server") or (None,))[0]
        host = headers.get("host")
        if host is not None and not valid_authority(host):
            raise _HTTPError(400, INVALID_REQUEST, "Bad Request: malformed Host header")
        if not self.host_policy.host_allowed(host, server_address):
            raise _HTTPError(403, SERVER_ERROR, "Forbidden: invalid Host header")
        if is_metadata:
            # Public, for any origin (CORS), derived from the configured resource.
            assert auth is not None
            await auth.serve_metadata(scope["method"], send)
            return None
        if not self.host_policy.origin_allowed(headers.get("origin"), host, server_address):
            raise _HTTPError(403, SERVER_ERROR, "Forbidden: invalid Origin header")
        if is_metrics:
            assert self._metrics is not None
            if scope["method"] != "GET":
                raise _HTTPError(
                    405, SERVER_ERROR, "Method Not Allowed", headers=[(b"allow", b"GET")]
                )
            body = self._metrics.render()
            content_type = self._metrics.content_type.encode("latin-1")
            await _send_simple(send, 200, body, [(b"content-type", content_type)])
            return None
        client = scope.get("client")
        method = scope["method"]
        address = client[0] if client else None
        if auth is not None and method in ("POST", "GET", "DELETE"):
            # Before the body, before any session: a refused request holds nothing.
            token = await auth.authenticate(scope, RequestInfo(address, headers=headers))
            info = RequestInfo(
                address,
                principal=token.principal,
                headers=headers,
                token=token,
                scope_filter=auth.allows(token),
            )
            if method == "GET" and token.expires_at is not None:
                ends.append(token_deadline(token) or math.inf)
        else:
            info = RequestInfo(
                client_address=address,
                principal=self._principal(scope) if self._principal is not None else None,
                headers=headers,
            )
        if (
            method != "POST"
            and self.sessionless is not None
            and classify_other(headers.get(VERSION_HEADER), has_session=SESSION_HEADER in headers)
            is Era.MODERN
        ):
            raise method_not_allowed()
        if method == "POST":
            return await self._post(scope, receive, send, headers, info, held)
        if method == "GET":
            return await get_stream(self.manager, headers, info)
        if method == "DELETE":
            await delete_session(self.manager, send, headers, info)
            return None
        raise _HTTPError(
            405, SERVER_ERROR, "Method Not Allowed", headers=[(b"allow", b"GET, POST, DELETE")]
        )

    # -- POST ------------------------------------------------------------------------

    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        info: RequestInfo,
        held: list[InflightSlot],
    ) -> SseReply | None:
        """The checks every POST shares, the slot, the body, then the era's half."""
        accept = headers.get("accept")
        json_ok = accepts(accept, "application/json")
        sse_ok = accepts(accept, "text/event-stream")
        if not json_ok or (self.reply_mode == "sse" and not sse_ok):
            wanted = (
                "application/json"
                if self.reply_mode == "json"
                else ("application/json and text/event-stream")
            )
            raise _HTTPError(406, SERVER_ERROR, f"Not Acceptable: client must accept {wanted}")
        if not is_json_content_type(headers.get("content-type")):
            raise _HTTPError(
                415, SERVER_ERROR, "Unsupported Media Type: Content-Type must be application/json"
            )
        claimed = headers.get("mcp-method")
        if claimed == "server/discover":
            held.append(await self._take(self._discover_slots, None))
        elif claimed != LISTEN:  # a listen stream has bounds of its own (ListenLimits)
            held.append(await self._take(self._inflight, info))
        try:
            body = await _read_body(receive, headers, self.max_body_bytes, self.body_timeout)
        except _ClientGone:
            return None
        try:
            messages, is_batch = decode_body(body, self.input_limits)
        except ProtocolError as exc:
            raise _from_protocol_error(exc) from None
        if self._auth is not None and info.token is not None:
            self._auth.check_scopes(messages, info.token)  # 403 before anything is allocated
        self._settle_slots(claimed, messages, info, held)
        if (
            self.sessionless is not None
            and self.server is not None
            and classify_post(
                messages, headers.get(VERSION_HEADER), has_session=SESSION_HEADER in headers
            )
            is Era.MODERN
        ):
            await post_modern(
                self.sessionless,
                self.server,
                scope,
                receive,
                send,
                headers,
                info,
                messages,
                self._calls if self._calls.enabled else None,
            )
            return None
        return await post_session(
            self.manager,
            self.reply_mode,
            self.input_limits,
            receive,
            send,
            headers,
            info,
            messages,
            is_batch,
        )

    async def _take(self, pool: InflightLimiter, info: RequestInfo | None) -> InflightSlot:
        """A slot of *pool* before the body is read, or the refusal (nothing read, nothing held)."""
        key = (
            self._client_key(info) if info is not None and pool.max_per_client is not None else None
        )
        try:
            if pool.max_queued:
                return await pool.acquire(key)
            return pool.acquire_nowait(key)
        except ServiceUnavailable as exc:  # ServerBusy 503, TooManyInFlight 429
            raise _answer_for(exc) from None

    def _settle_slots(
        self,
        claimed: str | None,
        messages: Sequence[Message],
        info: RequestInfo,
        held: list[InflightSlot],
    ) -> None:
        """Make the slots fit the body: one per request, and a header's claim checked.

        A POST that ``Mcp-Method`` named ``server/discover`` or
        ``subscriptions/listen`` went by its own bounds; if the body is
        something else it takes a call slot now (or is refused), so a false
        header buys no way around the cap. A batch holds a slot per request.
        """
        first = messages[0] if len(messages) == 1 else None
        actual = first.method if isinstance(first, Request) else None
        if claimed in ("server/discover", LISTEN) and actual != claimed:
            for slot in held:
                slot.release()
            held.clear()
            key = self._client_key(info) if self._inflight.max_per_client is not None else None
            try:
                held.append(self._inflight.acquire_nowait(key))
            except ServiceUnavailable as exc:
                raise _answer_for(exc) from None
        if len(messages) > 1 and held:
            extra = sum(isinstance(message, Request) for message in messages) - 1
            if extra > 0:
                try:
                    held[0].extend_nowait(extra)
                except ServiceUnavailable as exc:
                    raise _answer_for(exc) from None


async def _run_in(
    scope: trio.CancelScope,
    run: Callable[..., Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``run(task_status=)`` inside *scope*, so its owner can end it (a verifier serves forever)."""
    with scope:
        await run(task_status=task_status)


class _ClientGone(Exception):
    pass


async def _read_body(
    receive: Receive, headers: dict[str, str], limit: int, timeout: float
) -> bytes:
    """The whole body; 413 as soon as it is over *limit* bytes, declared or sent.

    It must arrive within *timeout* seconds (a client that sends the headers,
    then trickles the body, would hold its request, and any slot taken for
    it, for as long as it likes): past that, 408 with ``Connection: close``,
    since the rest of the body would still be on the connection.
    """
    declared = headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        # ASCII digits only (str.isdigit() admits "²"), and few enough
        # that int() is cheap; more than 18 digits is over any limit.
        if not (declared.isascii() and declared.isdigit()):
            raise _HTTPError(400, INVALID_REQUEST, "Bad Request: invalid Content-Length")
        if len(declared) > 18 or int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    raise _HTTPError(
        408,
        SERVER_ERROR,
        f"Request Timeout: the body did not arrive within {timeout:g} s",
        headers=[(b"connection", b"close")],  # HTTP/2 drops it: only the stream ends there
        data={"body_timeout": timeout},
    )
