"""The bounded, nursery-scoped session manager: a thin coordinator.

:class:`BoundedSessionManager` implements :class:`SessionManager`: every
session's worker runs in its own cancel scope inside the manager's nursery,
and a :class:`trio.CapacityLimiter` holds one token per live session, so the
cap is exact even under concurrent creation. The per-session facts have one
owner each: the table (``_table``: live sessions, idle order, busy set,
slots, the victim choice), admission (``_admission``: creation budgets,
receipts, refunds) and the records (``_persistence``: saves, touches,
tombstones, the durable DELETE), the restores under way (``_restore``) and the
counters (``_statistics``). Each session's typed events (:class:`SessionEvents`)
reach those owners through ``_ManagerEvents``; a session closes along one
path (:meth:`_session_closed`).
"""

from __future__ import annotations

import logging
import secrets
import warnings
from typing import TYPE_CHECKING, Any, Literal, Self, final

import trio

from .._errors import (
    ServiceUnavailable,
    SessionNotFound,
    TooManyInFlight,
)
from .._interface import (
    CloseReason,
    ReplyMode,
    RequestInfo,
    RestoreOutcome,
    SessionInfo,
    SessionManager,
)
from .._options import DEFAULT_EVENT_STORE, with_overrides
from .._protocol._jsonrpc import ErrorResponse, Message, Request, Response
from .._session import Session, SessionStatistics
from .._stores._guard import StoreGuard
from .._stores._memory import InMemoryEventStore
from ._admission import Admission, Receipt
from ._broadcast import Broadcast
from ._persistence import SessionRecords
from ._restore import Restorer
from ._statistics import ManagerCounters, ManagerStatistics
from ._table import SessionTable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from .._options import ServerOptions
    from .._protocol._lifecycle import ClientInfo
    from .._ratelimit import SharedRateLimiter
    from .._server._server import McpServer
    from .._stores._base import EventStore, SessionStore
    from .._streams import EventStream
    from ._broadcast import ChangeRelay
    from ._limits import SessionLimits

__all__ = ["BoundedSessionManager", "ManagerStatistics", "new_session_id"]

logger = logging.getLogger("trio_mcp_sessions.manager")


def new_session_id() -> str:
    """192 random bits from :mod:`secrets`, URL-safe base64: visible ASCII only."""
    return secrets.token_urlsafe(24)


@final
class _ManagerEvents:
    """The manager's side of every session's events: each goes to the owner of that fact."""

    __slots__ = ("_manager", "_records", "_table")

    def __init__(self, manager: BoundedSessionManager) -> None:
        self._manager = manager
        self._table = manager._table
        self._records = manager._records if manager.session_store is not None else None

    def session_activity(self, session: Session, busy: bool) -> None:
        """Busy or idle: the table's LRU, then the record's TTL."""
        self._table.mark(session.session_id, busy)
        if self._records is not None:  # the hot path without a store: one call
            self._records.activity(session)

    def session_state_changed(self, session: Session) -> None:
        if self._records is not None:
            self._manager._spawn(self._records.save_state, session)

    def session_closed(self, session: Session) -> None:
        self._manager._session_closed(session)


@final
class BoundedSessionManager:
    """Sessions under an exact cap, each in its own cancel scope in one nursery.

    Run it as an async context manager, or start it as a service::

        async with BoundedSessionManager(server) as manager: ...
        manager = await nursery.start(BoundedSessionManager(server).run)

    Args:
        server: The MCP server whose handlers serve every session.
        options: The settings the manager reads from a :class:`ServerOptions`
            (*limits*, *retry_ms*, the ``store_*`` fields, the handlers'
            *request_timeout* and *max_request_time*), which documents them
            and holds their defaults.
        limits, retry_ms, store_timeout, store_failure_threshold, store_probe_after:
            Override the same field of *options* (``None`` keeps it).
        event_store: Where SSE events wait for resumption. The default
            (``"default"``) is a bounded :class:`InMemoryEventStore`; ``None``
            turns resumption off.
        session_store: Where session records live so that a session survives a
            restart or moves to another instance (``None``: no restore).
        rate_limiter: A creation rate limiter shared by several instances (for
            example :class:`RedisRateLimiter`); while it is unreachable the
            local windows of *limits* apply instead.
        on_session_created: Called as ``fn(session_id, info)`` once ``initialize``
            succeeded (not for restores).
        on_session_closed: Called as ``fn(session_id, reason)`` after a close.
        relay: Carries changes (``notify_all``, ``notify_resource_updated``)
            to the other instances, e.g. :class:`RedisBroadcast`.
    """

    def __init__(
        self,
        server: McpServer,
        *,
        options: ServerOptions | None = None,
        limits: SessionLimits | None = None,
        event_store: EventStore | Literal["default"] | None = DEFAULT_EVENT_STORE,
        session_store: SessionStore | None = None,
        rate_limiter: SharedRateLimiter | None = None,
        store_timeout: float | None = None,
        store_failure_threshold: int | None = None,
        store_probe_after: float | None = None,
        retry_ms: int | None = None,
        on_session_created: Callable[[str, RequestInfo], None] | None = None,
        on_session_closed: Callable[[str, CloseReason], None] | None = None,
        relay: ChangeRelay | None = None,
    ) -> None:
        options = with_overrides(  # validated there, once
            options,
            limits=limits,
            store_timeout=store_timeout,
            store_failure_threshold=store_failure_threshold,
            store_probe_after=store_probe_after,
            retry_ms=retry_ms,
        )
        self.server = server
        self.limits = options.limits
        self.event_store: EventStore | None = (
            InMemoryEventStore() if event_store == DEFAULT_EVENT_STORE else event_store
        )
        self.session_store = session_store
        self.store_timeout = options.store_timeout
        #: One bounded path per store: timeout, failure count, circuit breaker.
        self._guards = {
            name: StoreGuard(
                name,
                timeout=options.store_timeout,
                failure_threshold=options.store_failure_threshold,
                reset_after=options.store_probe_after,
            )
            for name in ("sessions", "events", "rate_limit")
        }
        self._sessions_guard = self._guards["sessions"]
        self._events_guard = self._guards["events"]
        self._rate_guard = self._guards["rate_limit"]
        self.retry_ms = options.retry_ms
        #: Each handler's deadline, and the most progress can push it to.
        self.request_timeout = options.request_timeout
        self.max_request_time = options.max_request_time
        self._on_session_created = on_session_created
        self._on_session_closed = on_session_closed
        self._table: SessionTable[Session] = SessionTable(self.limits.max_sessions)
        self._admission = Admission(self.limits, rate_limiter, self._rate_guard, self._spawn)
        self._records = SessionRecords(
            session_store,
            self.event_store,
            self.limits,
            self._sessions_guard,
            self._events_guard,
            self._spawn,
        )
        self._counters = ManagerCounters()
        #: Where ``notify_all`` goes: sessions, attached listeners, the relay.
        self.broadcast = Broadcast(self._table, relay)
        self._events = _ManagerEvents(self)
        self._restorer = Restorer(self, self._records, self._admission, self._counters)
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._draining = False

    # -- running --------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[BoundedSessionManager] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve sessions until :meth:`aclose`; then close every session (``shutdown``).

        With a session store, sessions open at shutdown stay restorable: their
        records are refreshed (bounded by ``store_timeout``) before they close.
        """
        if self._nursery is not None or self._stopped.is_set():
            raise RuntimeError("a session manager runs once")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                refresher = trio.CancelScope()
                if self.session_store is not None:
                    nursery.start_soon(
                        self._records.keep_busy_records,
                        refresher,
                        self._table.busy,
                        self._table.get,
                    )
                nursery.start_soon(self.broadcast.run)
                task_status.started(self)
                try:
                    await self._stopped.wait()
                finally:
                    refresher.cancel()
                    self.broadcast.stop()
                    with trio.CancelScope(shield=True):
                        await self._records.persist_for_restart(
                            self._table.sessions.values(), self.store_timeout
                        )
                    # Cancelled or stopped: either way every session ends as "shutdown".
                    self._close_all(CloseReason.SHUTDOWN)
        finally:
            self._nursery = None
            self._stopped.set()

    async def __aenter__(self) -> Self:
        self._outer = trio.open_nursery()
        nursery = await self._outer.__aenter__()
        await nursery.start(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._stopped.set()
        return await self._outer.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close every session (reason ``shutdown``) and stop the manager."""
        self._stopped.set()
        await trio.lowlevel.checkpoint()

    def _close_all(self, reason: CloseReason) -> None:
        for session in list(self._table.sessions.values()):
            session.close(reason)

    def begin_drain(self) -> None:
        """Stop admitting work; end GET streams with a reconnect hint.

        Requests in flight go on and deliver their answers on their own
        streams; :meth:`finish_drain` ends what is left when the grace period
        is up.
        """
        self._draining = True
        for session in list(self._table.sessions.values()):
            session.end_connections(self.retry_ms, standalone_only=True)

    def finish_drain(self) -> None:
        """End every response still open with a reconnect hint (the grace period is over)."""
        self._draining = True
        for session in list(self._table.sessions.values()):
            session.end_connections(self.retry_ms)

    @property
    def draining(self) -> bool:
        """True once :meth:`begin_drain` ran: a readiness check can report it."""
        return self._draining

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    # -- the session's events: the table and the records kept in step ---------------

    def _live(self, session_id: str) -> Session:
        return self._table.live(session_id)

    def _session_closed(self, session: Session) -> None:
        """The one close path: every owner forgets the session, then the counters."""
        session_id = session.session_id
        self._table.remove(session_id, session)
        self._admission.settle(session_id)
        reason = session.close_reason or CloseReason.ERROR
        self._records.closed(session_id, reason)
        self._counters.session_closed(session, reason, now=trio.current_time())
        _call_hook(self._on_session_closed, "on_session_closed", session_id, reason)

    # -- admission ------------------------------------------------------------------

    def _check_admission(self) -> trio.Nursery:
        nursery = self._nursery
        if nursery is None:
            self._counters.refused["unavailable"] += 1
            raise ServiceUnavailable("the session manager is not running")
        self._check_draining()
        return nursery

    def _check_draining(self) -> None:
        """While draining, nothing new starts: the work in flight gets the grace period."""
        if self._draining:
            self._counters.refused["unavailable"] += 1
            raise ServiceUnavailable("the server is shutting down", retry_after=5.0)

    async def _open(self, session_id: str, info: RequestInfo, receipt: Receipt) -> Session:
        """Take a slot (evicting per policy) and start the session's worker."""
        nursery = self._check_admission()
        try:
            await self._table.take_slot(session_id, self.limits.eviction, self.limits.eviction_wait)
        except BaseException:
            self._admission.refund(receipt)
            raise
        session = Session(
            session_id,
            self.server,
            event_store=self.event_store,
            idle_timeout=self.limits.idle_timeout,
            init_timeout=self.limits.init_timeout,
            max_lifetime=self.limits.max_lifetime,
            retry_ms=self.retry_ms,
            events=self._events,
            principal=info.principal,
            store_timeout=self.store_timeout,
            write_timeout=self.limits.write_timeout,
            max_inflight=self.limits.max_inflight_per_session,
            store_guard=self._events_guard,
            request_timeout=self.request_timeout,
            max_request_time=self.max_request_time,
        )
        self._table.add(session_id, session)  # initializing: not an eviction candidate yet
        self._admission.hold(session_id, receipt)
        try:
            # Not nursery.start(): nothing needs the worker to have run yet (a
            # close before it runs cancels its scope first, and work queued for
            # it waits), and waiting for it costs two scheduling rounds.
            nursery.start_soon(session.run)
        except RuntimeError:  # the manager's nursery is closing
            self._table.remove(session_id, session)
            self._admission.refund_held(session_id)
            self._counters.refused["unavailable"] += 1
            raise ServiceUnavailable("the session manager is shutting down") from None
        self._counters.created += 1
        return session

    # -- SessionManager -------------------------------------------------------------

    async def create_session(self, info: RequestInfo) -> str:
        # The schedule point comes last, where the new worker takes its first
        # step in the same round; nothing can cancel a creation half-way.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._check_admission()
            receipt = await self._admission.admit(info)
            session = await self._open(new_session_id(), info, receipt)
        finally:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return session.session_id

    async def initialize_session(
        self, session_id: str, request: Request, client: ClientInfo, info: RequestInfo
    ) -> Response | ErrorResponse:
        await trio.lowlevel.checkpoint()
        session = self._live(session_id)
        reply = await session.initialize(request, client)
        if isinstance(reply, ErrorResponse):
            # A creation whose initialize fails gives its rate-limit token back.
            self._admission.refund_held(session_id)
            if not session.is_open:
                # Closed while the hooks ran (its init timeout, a shutdown).
                raise SessionNotFound(session_id)
            await self.close_session(session_id, CloseReason.ERROR)
            return reply
        self._admission.settle(session_id)
        self._counters.session_initialized(session_id, client)
        if self.session_store is not None:
            # Awaited, so a client's very next request can be restored
            # elsewhere; a failing store only costs restorability (degraded).
            await self._records.save(session)
        _call_hook(self._on_session_created, "on_session_created", session_id, info)
        return reply

    def get_session(self, session_id: str) -> SessionInfo | None:
        session = self._table.get(session_id)
        return session.info() if session is not None and session.is_open else None

    def session_statistics(self, session_id: str) -> SessionStatistics | None:
        """A snapshot of one live session, or ``None`` when it is not live."""
        session = self._table.get(session_id)
        return session.statistics() if session is not None and session.is_open else None

    def session(self, session_id: str) -> Session:
        """Deprecated: the private session object; use :meth:`session_statistics`."""
        warnings.warn(
            "BoundedSessionManager.session() returns a private object and is deprecated; "
            "use session_statistics() to look, close_session() to close",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._live(session_id)

    async def has_session(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self.get_session(session_id) is not None

    async def close_session(
        self, session_id: str, reason: CloseReason = CloseReason.DELETED
    ) -> None:
        """Close a session and wait until nothing of it remains.

        Raises:
            SessionNotFound: No such live session.
            StoreUnavailable: A DELETE (``reason=DELETED``) whose record could
                not be removed from the session store; the session stays open.
        """
        try:
            session = self._live(session_id)
        except SessionNotFound:
            await trio.lowlevel.checkpoint()
            raise
        forget = reason is CloseReason.DELETED and self.session_store is not None
        if forget:
            # One DELETE at a time per session: a second waits for the first,
            # then finds the session gone (404) or, if the first failed, tries.
            while (pending := self._records.pending_delete(session_id)) is not None:
                await pending.wait()
                session = self._live(session_id)
            await self._records.delete_record(session)
        session.close(reason)
        if session.closed.is_set() and not forget:
            # An idle session closes at once: nothing to wait for.
            await trio.lowlevel.checkpoint()
            return
        # The slot is free when this returns: wait for the worker to finish.
        with trio.CancelScope(shield=True):
            await session.closed.wait()
            if forget:
                # Its events go too (best effort: without the record nothing
                # can resume them, and they expire by age).
                await self._records.forget_events(session_id)

    async def create_stream(
        self,
        session_id: str,
        requests: Sequence[Request],
        info: RequestInfo,
        reply_mode: ReplyMode,
    ) -> EventStream:
        # As in create_session: the handlers start, then the schedule point,
        # during which they run.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            session = self._live(session_id)
            self._check_draining()
            return session.open_request_stream(requests, info, reply_mode)
        except TooManyInFlight:
            self._counters.refused["inflight"] += len(requests)
            raise
        finally:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def accept_messages(
        self, session_id: str, messages: Sequence[Message], info: RequestInfo
    ) -> None:
        await trio.lowlevel.checkpoint()
        session = self._live(session_id)
        try:
            session.accept_all(messages)
        except TooManyInFlight:
            self._counters.refused["inflight"] += len(messages)
            raise

    async def create_standalone_stream(self, session_id: str) -> EventStream | None:
        await trio.lowlevel.checkpoint()
        session = self._live(session_id)
        self._check_draining()
        return await session.open_standalone_stream()

    async def resume(self, session_id: str, last_event_id: str) -> EventStream:
        await trio.lowlevel.checkpoint()
        session = self._live(session_id)
        self._check_draining()
        return await session.resume(last_event_id)

    async def restore_session(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        """Bring back a session from the session store: single-flight per id.

        The restore takes a slot like a new session (the cap, the eviction
        policy) but is not charged to the creation rate limits (it creates
        nothing new for its client); then ``initialize`` is replayed with
        ``is_restored=True``.

        Raises:
            StoreUnavailable: The store could not be read (answer 503).
            TooManySessions, ServiceUnavailable: Not admitted.
        """
        return await self._restorer.restore(session_id, info)

    # -- broadcast: the Broadcast component (sessions, listen streams, other instances) --

    async def notify_resource_updated(self, uri: str) -> int:
        """``notifications/resources/updated`` to *uri*'s subscribers here, and via the relay."""
        return await self.broadcast.notify_resource_updated(uri)

    async def notify_all(self, method: str, params: dict[str, object] | None = None) -> int:
        """A notification to every session and to the listen streams that want it; count here."""
        return await self.broadcast.notify_all(method, params)

    # -- observability ----------------------------------------------------------------

    def statistics(self) -> ManagerStatistics:
        """A snapshot of the counters and gauges (what ``metrics_path`` exports)."""
        return self._counters.snapshot(
            self._table,
            self._admission,
            self._guards,
            self.limits.max_sessions,
            self._records.tracked,
        )

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """Deprecated: read ``statistics().slots_held`` instead."""
        warnings.warn(
            "BoundedSessionManager.limiter is deprecated; read statistics().slots_held",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._table.limiter


def _call_hook(hook: Callable[..., object] | None, name: str, *args: object) -> None:
    """An application's hook: its failure is logged, never raised into the manager."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        logger.exception("%s hook failed", name)


def _documented_like(protocol: type, cls: type) -> None:
    """Give *cls*'s undocumented protocol methods the protocol's docstrings (for ``help()``)."""
    for name, member in vars(protocol).items():
        implementation = vars(cls).get(name)
        if callable(member) and callable(implementation) and not implementation.__doc__:
            implementation.__doc__ = member.__doc__


_documented_like(SessionManager, BoundedSessionManager)
