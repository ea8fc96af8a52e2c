"""The session-manager interface and the bounded, nursery-scoped manager.

The transport talks to sessions only through :class:`SessionManager` (the
shape of rmcp's ``SessionManager`` trait, in trio terms), so an application
can plug in its own. :class:`BoundedSessionManager` is ours: every session's
worker runs in its own cancel scope inside the manager's nursery, and a
:class:`trio.CapacityLimiter` holds one token per live session, so the cap
is exact even under concurrent creation.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar, final

import trio

from ._errors import (
    RateLimited,
    ServiceUnavailable,
    SessionNotFound,
    StoreUnavailable,
    TooManyInFlight,
    TooManySessions,
)
from ._interface import (
    CloseReason,
    ReplyMode,
    RequestInfo,
    RestoreOutcome,
    SessionInfo,
    SessionManager,
)
from ._protocol._jsonrpc import ErrorResponse, Message, ProtocolError, Request, Response
from ._protocol._lifecycle import parse_initialize
from ._ratelimit import RateLimit, SharedRateLimiter, SlidingWindow, SlidingWindowLimiter
from ._session import Session
from ._stores._base import SessionRecord
from ._stores._guard import StoreGuard, StoreGuardStatistics
from ._stores._memory import InMemoryEventStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from ._protocol._lifecycle import ClientInfo
    from ._server._server import McpServer
    from ._stores._base import EventStore, SessionStore
    from ._streams import EventStream

__all__ = [
    "BoundedSessionManager",
    "EvictionPolicy",
    "ManagerStatistics",
    "RestoreOutcome",
    "SessionInfo",
    "SessionLimits",
    "SessionManager",
]

logger = logging.getLogger("trio_mcp_sessions.manager")


class EvictionPolicy(enum.Enum):
    """What happens when ``initialize`` arrives and the session cap is reached."""

    LEAST_RECENTLY_ACTIVE = "least_recently_active"
    """Evict the least recently active session that has no request in flight and
    no open stream; refuse (503) when every session is busy. The default: an
    evicted client was idle, so it loses nothing in flight."""
    OLDEST = "oldest"
    """Evict the session created first, busy or not (the seed crate's FIFO);
    its in-flight handlers are cancelled and its streams end."""
    REJECT = "reject"
    """Never evict; refuse (503 with ``Retry-After``)."""


def _client_address(info: RequestInfo) -> str | None:
    return info.client_address


def _positive_seconds(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds")
    if not value > 0 or math.isnan(value):
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Every bound on sessions, in one place. Invalid values are refused here.

    The defaults keep a default server from being wedged: the cap is finite,
    idle sessions expire, and at the cap the least recently active idle
    session makes room, so clients that never send DELETE cannot fill the
    server for good.

    Attributes:
        max_sessions: Live sessions at most, exactly (default 10,000).
        eviction: What to do at the cap (:class:`EvictionPolicy`).
        idle_timeout: Seconds without activity before a session ends; the
            clock stops while a request is in flight or a stream is open.
        init_timeout: Seconds a new session has to be used after
            ``initialize`` (``initialized``, a request or a stream).
        max_lifetime: Seconds after which a session ends whatever it is doing
            (``None``: no limit).
        rate_limit: A :class:`RateLimit` on session creation shared by all
            clients (``None``: none).
        rate_limit_per_client: A :class:`RateLimit` applied to each client key.
        rate_limit_key: ``fn(RequestInfo) -> str | None``: the client key; the
            default is the peer address. Return the authenticated principal to
            limit per user instead. ``None`` exempts the request from the
            per-client limit.
        eviction_wait: Seconds a creation waits for its victim to finish closing
            before it gives up with 503.
        max_inflight_per_session: Requests one session may have running at
            once; a request (or batch) over it is refused with
            :exc:`TooManyInFlight` (HTTP 429) before anything of it starts.
        write_timeout: Seconds an HTTP response may take nothing from its full
            buffer (a reader that stopped reading) before it is dropped; its
            client resumes from the event store.
    """

    max_sessions: int = 10_000
    eviction: EvictionPolicy = EvictionPolicy.LEAST_RECENTLY_ACTIVE
    idle_timeout: float = 600.0
    init_timeout: float = 60.0
    max_lifetime: float | None = None
    rate_limit: RateLimit | None = None
    rate_limit_per_client: RateLimit | None = None
    rate_limit_key: Callable[[RequestInfo], str | None] = _client_address
    eviction_wait: float = 5.0
    max_inflight_per_session: int = 100
    write_timeout: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.max_sessions, bool) or not isinstance(self.max_sessions, int):
            raise TypeError("max_sessions must be an int")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if isinstance(self.eviction, str):
            try:
                object.__setattr__(self, "eviction", EvictionPolicy(self.eviction))
            except ValueError:
                names = ", ".join(p.value for p in EvictionPolicy)
                raise ValueError(
                    f"eviction must be one of {names}, not {self.eviction!r}"
                ) from None
        if not isinstance(self.eviction, EvictionPolicy):
            raise TypeError("eviction must be an EvictionPolicy")
        _positive_seconds("idle_timeout", self.idle_timeout)
        _positive_seconds("init_timeout", self.init_timeout)
        _positive_seconds("max_lifetime", self.max_lifetime, optional=True)
        _positive_seconds("eviction_wait", self.eviction_wait)
        _positive_seconds("write_timeout", self.write_timeout)
        if isinstance(self.max_inflight_per_session, bool) or not isinstance(
            self.max_inflight_per_session, int
        ):
            raise TypeError("max_inflight_per_session must be an int")
        if self.max_inflight_per_session < 1:
            raise ValueError(
                f"max_inflight_per_session must be at least 1, got {self.max_inflight_per_session}"
            )
        for name in ("rate_limit", "rate_limit_per_client"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, RateLimit):
                raise TypeError(
                    f"{name} must be a RateLimit(max_creations, window) or None, not {value!r}"
                )


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A snapshot of the manager's counters (see :meth:`BoundedSessionManager.statistics`).

    Attributes:
        live_sessions: Sessions holding a slot now.
        max_sessions: The cap.
        created: Sessions created since start.
        closed: Sessions closed since start (sum of ``closed_by_reason``).
        closed_by_reason: ``{reason: count}`` (:class:`CloseReason` values).
        refused_by_reason: ``{"capacity" | "rate_limit" | "unavailable" | "inflight": count}``
            (``inflight``: requests refused at a session's in-flight cap).
        evicted: Sessions closed to make room (also in ``closed_by_reason``).
        busy_sessions: Live sessions with a request in flight or a stream open.
        restored: Sessions brought back from the session store.
        store_errors: Store calls that failed, timed out, or were refused at
            once while their store was down (service went on, degraded).
        requests_in_flight: Requests whose handlers are running, all sessions.
        dropped_readers: HTTP responses dropped because their reader took
            nothing for ``write_timeout`` seconds (or fell behind a broadcast).
        stores: Per store (``"sessions"``, ``"events"``, ``"rate_limit"``):
            its circuit state and call counters (:class:`StoreGuardStatistics`).
        subscriptions: ``resources/subscribe`` URIs held by live sessions
            (each at most ``McpServer.max_subscriptions``).
    """

    live_sessions: int
    max_sessions: int
    created: int
    closed: int
    closed_by_reason: dict[str, int] = field(default_factory=dict)
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    evicted: int = 0
    busy_sessions: int = 0
    restored: int = 0
    store_errors: int = 0
    requests_in_flight: int = 0
    dropped_readers: int = 0
    stores: dict[str, StoreGuardStatistics] = field(default_factory=dict)
    subscriptions: int = 0


#: Recently closed ids remembered locally so a racing restore cannot resurrect them.
_MAX_TOMBSTONES: Final = 10_000
T = TypeVar("T")


@dataclass(slots=True)
class _Receipt:
    """What a successful rate-limit check spent, so a failed creation can refund it."""

    local: list[tuple[SlidingWindow, float]] = field(default_factory=list)
    shared: object | None = None


def new_session_id() -> str:
    """192 random bits from :mod:`secrets`, URL-safe base64: visible ASCII only."""
    return secrets.token_urlsafe(24)


@final
class BoundedSessionManager:
    """Sessions under an exact cap, each in its own cancel scope in one nursery.

    Run it as an async context manager, or start it as a service::

        async with BoundedSessionManager(server) as manager: ...
        manager = await nursery.start(BoundedSessionManager(server).run)

    Args:
        server: The MCP server whose handlers serve every session.
        limits: Caps, timeouts and rate limits (:class:`SessionLimits`).
        event_store: Where SSE events wait for resumption. The default is a
            bounded :class:`InMemoryEventStore`; ``None`` turns resumption off.
        session_store: Where session records live so that a session survives a
            restart or moves to another instance (``None``: no restore).
        rate_limiter: A creation rate limiter shared by several instances (for
            example :class:`RedisRateLimiter`); while it is unreachable the
            local windows of *limits* apply instead.
        store_timeout: Seconds any store call may take before it counts as a
            failure.
        store_failure_threshold: Consecutive failures of one store after which
            it counts as down: its calls then fail at once (a circuit breaker)
            instead of each waiting *store_timeout*.
        store_probe_after: Seconds a store counts as down before one call
            probes it again.
        retry_ms: The ``retry`` hint (milliseconds) sent on SSE streams.
        on_session_created: Called as ``fn(session_id, info)`` once ``initialize``
            succeeded (not for restores).
        on_session_closed: Called as ``fn(session_id, reason)`` after a close.
    """

    def __init__(
        self,
        server: McpServer,
        *,
        limits: SessionLimits | None = None,
        event_store: EventStore | Literal["default"] | None = "default",
        session_store: SessionStore | None = None,
        rate_limiter: SharedRateLimiter | None = None,
        store_timeout: float = 2.0,
        store_failure_threshold: int = 2,
        store_probe_after: float = 5.0,
        retry_ms: int = 1000,
        on_session_created: Callable[[str, RequestInfo], None] | None = None,
        on_session_closed: Callable[[str, CloseReason], None] | None = None,
    ) -> None:
        _positive_seconds("store_timeout", store_timeout)
        self.server = server
        self.limits = limits if limits is not None else SessionLimits()
        self.event_store: EventStore | None = (
            InMemoryEventStore() if event_store == "default" else event_store
        )
        self.session_store = session_store
        self.store_timeout = store_timeout
        #: One bounded path per store: timeout, failure count, circuit breaker.
        self._guards = {
            name: StoreGuard(
                name,
                timeout=store_timeout,
                failure_threshold=store_failure_threshold,
                reset_after=store_probe_after,
            )
            for name in ("sessions", "events", "rate_limit")
        }
        self._sessions_guard = self._guards["sessions"]
        self._events_guard = self._guards["events"]
        self._rate_guard = self._guards["rate_limit"]
        self.retry_ms = retry_ms
        self._on_session_created = on_session_created
        self._on_session_closed = on_session_closed
        self._limiter = trio.CapacityLimiter(self.limits.max_sessions)
        #: Live sessions in creation order (the ``oldest`` policy's queue).
        self._sessions: dict[str, Session] = {}
        #: Sessions with nothing in flight, least recently active first.
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._busy_ids: set[str] = set()
        # Local windows; with a shared limiter they are its fallback while its
        # backend is unreachable, with the same limits unless set otherwise.
        self._rate = SlidingWindowLimiter(
            self.limits.rate_limit or (rate_limiter.global_limit if rate_limiter else None),
            self.limits.rate_limit_per_client
            or (rate_limiter.per_client if rate_limiter else None),
        )
        self._shared_rate = rate_limiter
        self._rate_receipts: dict[str, _Receipt] = {}
        #: Ids closed for good recently: never restored, whatever a store says.
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._restoring: dict[str, trio.Event] = {}
        self._saving: dict[str, bool] = {}
        #: What the store holds of each session's mutable state (log level,
        #: subscriptions), so a change is stored as the difference.
        self._stored_state: dict[str, tuple[str | None, frozenset[str]]] = {}
        self._last_store_touch: dict[str, float] = {}
        self._refused: Counter[str] = Counter()
        self._evicted = 0
        self._restored = 0
        #: Dropped readers of sessions that have closed (live ones count their own).
        self._dropped_readers = 0
        #: Sessions whose DELETE is removing their record (nothing may save it
        #: meanwhile), and whether a save was skipped.
        self._deleting: dict[str, bool] = {}
        #: The DELETE under way per session id, which a concurrent one waits for.
        self._deletes: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._draining = False
        self._created = 0
        self._closed_by_reason: Counter[str] = Counter()

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
                    nursery.start_soon(self._keep_busy_records, refresher)
                task_status.started(self)
                try:
                    await self._stopped.wait()
                finally:
                    refresher.cancel()
                    with trio.CancelScope(shield=True):
                        await self._persist_for_restart()
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
        for session in list(self._sessions.values()):
            session.close(reason)

    def begin_drain(self) -> None:
        """Stop admitting work; end GET streams with a reconnect hint.

        Requests in flight go on and deliver their answers on their own
        streams; :meth:`finish_drain` ends what is left when the grace period
        is up.
        """
        self._draining = True
        for session in list(self._sessions.values()):
            session.end_connections(self.retry_ms, standalone_only=True)

    def finish_drain(self) -> None:
        """End every response still open with a reconnect hint (the grace period is over)."""
        self._draining = True
        for session in list(self._sessions.values()):
            session.end_connections(self.retry_ms)

    @property
    def draining(self) -> bool:
        return self._draining

    # -- stores -----------------------------------------------------------------------

    async def _store_call(
        self, guard: StoreGuard, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any
    ) -> T:
        """One store call through *guard*: bounded, counted, failing fast while it is down.

        Raises:
            StoreUnavailable: The store failed, did not answer in time, or is
                known to be down.
        """
        return await guard.call(what, fn, *args, **kw)

    def _record(self, session: Session) -> SessionRecord:
        assert session.client_info is not None
        now = time.time()
        return SessionRecord(
            session_id=session.session_id,
            protocol_version=session.client_info.protocol_version,
            initialize_params=session.client_info.raw_params,
            log_level=session.log_level,
            subscriptions=tuple(sorted(session.subscriptions)),
            principal=session.principal,
            created_at=now - (trio.current_time() - session.created_at),
            last_activity=now - (trio.current_time() - session.last_activity),
        )

    async def _save(self, session: Session, *, whole: bool = True) -> None:
        """Write a session's record; repeated while changes arrive during the write.

        With ``whole=False`` (a ``logging/setLevel`` or a subscription
        changed) and a store that offers ``update_state``, only what changed
        since the last write goes to the store, not the whole record.
        """
        store = self.session_store
        session_id = session.session_id
        if session_id in self._deleting:
            self._deleting[session_id] = True  # saved if the delete fails
            return
        if store is None or session_id in self._saving:
            if session_id in self._saving:
                self._saving[session_id] = True  # dirty: the running save goes again
            return
        self._saving[session_id] = False
        update = getattr(store, "update_state", None)
        try:
            while session.is_open and session.client_info is not None:
                state = session.persisted_state()
                stored = self._stored_state.get(session_id)
                try:
                    if whole or update is None or stored is None:
                        await self._store_call(
                            self._sessions_guard,
                            "session save",
                            store.save,
                            self._record(session),
                            ttl=self._ttl(),
                        )
                        if session.is_open:  # closed meanwhile: its entries are gone
                            self._last_store_touch[session_id] = trio.current_time()
                    elif state != stored:
                        await self._store_call(
                            self._sessions_guard,
                            "session state update",
                            update,
                            session_id,
                            log_level=state[0],
                            subscribe=sorted(state[1] - stored[1]),
                            unsubscribe=sorted(stored[1] - state[1]),
                        )
                except StoreUnavailable:
                    return  # degraded: served, not restorable until the next save
                if not session.is_open:
                    return  # closed while we wrote: nothing of it may stay here
                self._stored_state[session_id] = state
                if not self._saving.get(session_id):
                    return
                self._saving[session_id] = False
                whole = False
        finally:
            self._saving.pop(session_id, None)

    def _ttl(self) -> float:
        lifetime = self.limits.max_lifetime
        return min(self.limits.idle_timeout, lifetime) if lifetime else self.limits.idle_timeout

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    def _state_changed(self, session: Session) -> None:
        self._spawn(partial(self._save, session, whole=False))

    def _touch_due(self, session_id: str) -> bool:
        """Whether a record's TTL wants refreshing (a quarter of it has passed); if so, now."""
        now = trio.current_time()
        if now - self._last_store_touch.get(session_id, -math.inf) < self._ttl() / 4:
            return False
        self._last_store_touch[session_id] = now
        return True

    async def _touch(self, session_id: str) -> None:
        """Push a record's expiry a TTL ahead (raises :class:`StoreUnavailable`)."""
        assert self.session_store is not None
        await self._store_call(
            self._sessions_guard,
            "session touch",
            self.session_store.touch,
            session_id,
            ttl=self._ttl(),
            last_activity=time.time(),
        )

    async def _touch_record(self, session: Session) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._touch(session.session_id)

    async def _keep_busy_records(self, scope: trio.CancelScope) -> None:
        """Refresh the store records of busy sessions, a quarter of the TTL apart.

        A busy session (a request in flight, a stream attached, such as a GET
        stream held for hours) never idles out, and nothing else touches its
        record while the client sends nothing; without this its record would
        expire and a restart would lose a live session.
        """
        with scope:
            while True:
                await trio.sleep(self._ttl() / 4)
                for session_id in list(self._busy_ids):
                    session = self._sessions.get(session_id)
                    if session is None or not session.is_open or session.client_info is None:
                        continue
                    if not self._touch_due(session_id):
                        continue  # touched on activity recently enough
                    try:
                        await self._touch(session_id)
                    except StoreUnavailable:
                        break  # the store is down: try again next period

    async def _forget(self, session_id: str) -> None:
        """Remove everything stored for a session closed for good."""
        if self.session_store is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._store_call(
                    self._sessions_guard, "session delete", self.session_store.delete, session_id
                )
        await self._forget_events(session_id)

    async def _forget_events(self, session_id: str) -> None:
        if self.event_store is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._store_call(
                    self._events_guard,
                    "event delete",
                    self.event_store.delete_session,
                    session_id,
                )

    async def _persist_for_restart(self) -> None:
        if self.session_store is None:
            return
        sessions = [s for s in self._sessions.values() if s.is_open and s.client_info]
        with trio.move_on_after(self.store_timeout):
            async with trio.open_nursery() as nursery:
                for session in sessions:
                    nursery.start_soon(self._save, session)

    # -- the table ------------------------------------------------------------------

    def _live(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or not session.is_open:
            raise SessionNotFound(session_id)
        return session

    def _session_activity(self, session: Session, busy: bool) -> None:
        """Keep the idle LRU in step with a session's state: O(1) per change."""
        session_id = session.session_id
        if busy:
            self._idle.pop(session_id, None)
            self._busy_ids.add(session_id)
        else:
            self._busy_ids.discard(session_id)
            self._idle[session_id] = None
            self._idle.move_to_end(session_id)
        # Keep the record's TTL ahead of the idle deadline, lazily: one touch
        # per quarter of the TTL, not one store call per request.
        if (
            self.session_store is not None
            and session.client_info is not None
            and self._touch_due(session_id)
        ):
            self._spawn(self._touch_record, session)

    def _session_closed(self, session: Session) -> None:
        session_id = session.session_id
        if self._sessions.get(session_id) is session:
            del self._sessions[session_id]
        self._idle.pop(session_id, None)
        self._busy_ids.discard(session_id)
        self._rate_receipts.pop(session_id, None)
        self._last_store_touch.pop(session_id, None)
        self._stored_state.pop(session_id, None)
        self._limiter.release_on_behalf_of(session_id)
        self._dropped_readers += session.dropped_readers
        reason = session.close_reason or CloseReason.ERROR
        self._closed_by_reason[reason.value] += 1
        if reason is CloseReason.EVICTED:
            self._evicted += 1
        keep_for_restart = reason is CloseReason.SHUTDOWN and self.session_store is not None
        if not keep_for_restart:
            self._tombstones[session_id] = None
            if len(self._tombstones) > _MAX_TOMBSTONES:
                self._tombstones.popitem(last=False)
            delete_nowait = getattr(self.event_store, "delete_session_nowait", None)
            if delete_nowait is not None:
                delete_nowait(session_id)
            deleted_by_close = reason is CloseReason.DELETED and self.session_store is not None
            if not deleted_by_close and (
                self.session_store is not None
                or (self.event_store is not None and delete_nowait is None)
            ):
                # (A DELETE removed the record before the close and removes
                # the events after it: close_session.)
                self._spawn(self._forget, session_id)
        logger.info(
            "session closed session_id=%s reason=%s lifetime=%.3fs",
            session_id,
            reason.value,
            trio.current_time() - session.created_at,
            extra={"session_id": session_id, "reason": reason.value},
        )
        if self._on_session_closed is not None:
            try:
                self._on_session_closed(session_id, reason)
            except Exception:
                logger.exception("on_session_closed hook failed")

    # -- admission ------------------------------------------------------------------

    def _check_admission(self) -> trio.Nursery:
        nursery = self._nursery
        if nursery is None:
            self._refused["unavailable"] += 1
            raise ServiceUnavailable("the session manager is not running")
        self._check_draining()
        return nursery

    def _check_draining(self) -> None:
        """While draining, nothing new starts: the work in flight gets the grace period."""
        if self._draining:
            self._refused["unavailable"] += 1
            raise ServiceUnavailable("the server is shutting down", retry_after=5.0)

    async def _admit_rate(self, info: RequestInfo) -> _Receipt:
        """Spend a creation from the rate limits, or raise :class:`RateLimited`."""
        receipt = _Receipt()
        shared = self._shared_rate
        if shared is None and not self._rate.enabled:
            return receipt
        per_client = shared.per_client if shared is not None else self.limits.rate_limit_per_client
        key = self.limits.rate_limit_key(info) if per_client is not None else None
        wait = 0.0
        if shared is not None:
            try:
                wait, receipt.shared = await self._store_call(
                    self._rate_guard, "rate limit", shared.acquire, key
                )
            except StoreUnavailable:
                shared = None  # degraded: this instance's own windows apply
        if shared is None and self._rate.enabled:
            wait, receipt.local = self._rate.acquire(key, trio.current_time())
        if wait > 0:
            self._refused["rate_limit"] += 1
            raise RateLimited(
                "too many sessions created; slow down", retry_after=max(1.0, math.ceil(wait))
            )
        return receipt

    def _refund(self, receipt: _Receipt | None) -> None:
        if receipt is None:
            return
        self._rate.refund(receipt.local)
        if receipt.shared is not None and self._shared_rate is not None:
            self._spawn(self._refund_shared, receipt.shared)

    async def _refund_shared(self, token: object) -> None:
        assert self._shared_rate is not None
        with contextlib.suppress(StoreUnavailable):
            await self._store_call(self._rate_guard, "rate refund", self._shared_rate.refund, token)

    async def _open(self, session_id: str, info: RequestInfo, receipt: _Receipt) -> Session:
        """Take a slot (evicting per policy) and start the session's worker."""
        nursery = self._check_admission()
        try:
            await self._take_slot(session_id)
        except BaseException:
            self._refund(receipt)
            raise
        session = Session(
            session_id,
            self.server,
            event_store=self.event_store,
            idle_timeout=self.limits.idle_timeout,
            init_timeout=self.limits.init_timeout,
            max_lifetime=self.limits.max_lifetime,
            retry_ms=self.retry_ms,
            on_closed=self._session_closed,
            on_activity=self._session_activity,
            on_state_changed=self._state_changed,
            principal=info.principal,
            store_timeout=self.store_timeout,
            write_timeout=self.limits.write_timeout,
            max_inflight=self.limits.max_inflight_per_session,
            store_guard=self._events_guard,
        )
        self._sessions[session_id] = session
        self._busy_ids.add(session_id)  # initializing: not an eviction candidate yet
        self._rate_receipts[session_id] = receipt
        try:
            # Not nursery.start(): nothing needs the worker to have run yet (a
            # close before it runs cancels its scope first, and work queued for
            # it waits), and waiting for it costs two scheduling rounds.
            nursery.start_soon(session.run)
        except RuntimeError:  # the manager's nursery is closing
            del self._sessions[session_id]
            self._busy_ids.discard(session_id)
            self._refund(self._rate_receipts.pop(session_id, None))
            self._limiter.release_on_behalf_of(session_id)
            self._refused["unavailable"] += 1
            raise ServiceUnavailable("the session manager is shutting down") from None
        self._created += 1
        return session

    # -- SessionManager -------------------------------------------------------------

    async def create_session(self, info: RequestInfo) -> str:
        # The schedule point comes last, where the new worker takes its first
        # step in the same round; nothing can cancel a creation half-way.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._check_admission()
            receipt = await self._admit_rate(info)
            session = await self._open(new_session_id(), info, receipt)
        finally:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return session.session_id

    async def _take_slot(self, session_id: str) -> None:
        """Acquire a limiter token for *session_id*, evicting per policy at the cap."""
        try:
            self._limiter.acquire_on_behalf_of_nowait(session_id)
            return
        except trio.WouldBlock:
            pass
        victim = self._eviction_victim()
        if victim is None:
            self._refused["capacity"] += 1
            raise TooManySessions(
                f"session limit ({self.limits.max_sessions}) reached and no session is idle",
                retry_after=5.0,
            )
        victim.close(CloseReason.EVICTED)
        # The victim releases its token when its worker has finished; trio's
        # limiter hands a released token straight to the first waiter, so no
        # other creation can slip in between: the cap holds exactly.
        with trio.move_on_after(self.limits.eviction_wait):
            await self._limiter.acquire_on_behalf_of(session_id)
            return
        self._refused["capacity"] += 1
        raise TooManySessions("timed out waiting for an evicted session to close", retry_after=5.0)

    def _eviction_victim(self) -> Session | None:
        """The session the policy names, taken out of the candidates (O(1) amortized)."""
        policy = self.limits.eviction
        if policy is EvictionPolicy.REJECT:
            return None
        if policy is EvictionPolicy.LEAST_RECENTLY_ACTIVE:
            while self._idle:
                session_id, _ = self._idle.popitem(last=False)
                session = self._sessions.get(session_id)
                if session is not None and session.is_open and not session.busy:
                    return session
            return None
        # OLDEST: creation order; skip sessions already on their way out.
        for session in self._sessions.values():
            if session.is_open and session.client_info is not None:
                return session
        return None

    async def initialize_session(
        self, session_id: str, request: Request, client: ClientInfo, info: RequestInfo
    ) -> Response | ErrorResponse:
        await trio.lowlevel.checkpoint()
        session = self._live(session_id)
        reply = await session.initialize(request, client)
        if isinstance(reply, ErrorResponse):
            # A creation whose initialize fails gives its rate-limit token back.
            self._refund(self._rate_receipts.pop(session_id, None))
            if not session.is_open:
                # Closed while the hooks ran (its init timeout, a shutdown).
                raise SessionNotFound(session_id)
            await self.close_session(session_id, CloseReason.ERROR)
            return reply
        self._rate_receipts.pop(session_id, None)
        logger.info(
            "session created session_id=%s protocol_version=%s client=%s",
            session_id,
            client.protocol_version,
            client.client_info.get("name"),
            extra={
                "session_id": session_id,
                "protocol_version": client.protocol_version,
                "client": client.client_info.get("name"),
            },
        )
        if self.session_store is not None:
            # Awaited, so a client's very next request can be restored
            # elsewhere; a failing store only costs restorability (degraded).
            await self._save(session)
        if self._on_session_created is not None:
            try:
                self._on_session_created(session_id, info)
            except Exception:
                logger.exception("on_session_created hook failed")
        return reply

    def get_session(self, session_id: str) -> SessionInfo | None:
        session = self._sessions.get(session_id)
        if session is None or not session.is_open:
            return None
        return SessionInfo(
            session_id,
            session.client_info.protocol_version if session.client_info else None,
            session.client_info is not None,
            session.principal,
        )

    def session(self, session_id: str) -> Session:
        """The live :class:`Session` object (raises :class:`SessionNotFound`)."""
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
            while (pending := self._deletes.get(session_id)) is not None:
                await pending.wait()
                session = self._live(session_id)
            await self._delete_record(session)
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
                await self._forget_events(session_id)

    async def _delete_record(self, session: Session) -> None:
        """Remove a deleted session's record *before* closing it, or refuse the delete.

        A DELETE is never undone: if the record stayed, a restart or another
        instance would restore the session. So the session closes only once
        its record is gone; while the store cannot delete it, the session
        stays as it was and the caller answers 503 (the client retries).

        Raises:
            StoreUnavailable: The record could not be deleted.
        """
        assert self.session_store is not None
        session_id = session.session_id
        self._deleting[session_id] = False  # no save may recreate it meanwhile
        done = self._deletes[session_id] = trio.Event()
        try:
            await self._store_call(
                self._sessions_guard, "session delete", self.session_store.delete, session_id
            )
        except StoreUnavailable:
            if self._deleting.pop(session_id) and session.is_open:
                self._spawn(self._save, session)  # a change arrived meanwhile
            raise
        except BaseException:
            self._deleting.pop(session_id, None)
            raise
        finally:
            del self._deletes[session_id]
            done.set()
        # No checkpoint from here to the close: nothing can save it again.
        del self._deleting[session_id]

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
            self._refused["inflight"] += len(requests)
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
            self._refused["inflight"] += len(messages)
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

        The restore is admitted like a new session (rate limits, cap,
        eviction), then ``initialize`` is replayed with ``is_restored=True``.

        Raises:
            StoreUnavailable: The store could not be read (answer 503).
            RateLimited, TooManySessions, ServiceUnavailable: Not admitted.
        """
        await trio.lowlevel.checkpoint()
        while True:
            if self.get_session(session_id) is not None:
                return RestoreOutcome.ALREADY_PRESENT
            if self.session_store is None:
                return RestoreOutcome.NOT_SUPPORTED
            if session_id in self._tombstones:
                return RestoreOutcome.NOT_FOUND
            pending = self._restoring.get(session_id)
            if pending is None:
                break
            await pending.wait()  # someone else is restoring it: wait, then look again
        done = self._restoring[session_id] = trio.Event()
        try:
            return await self._restore(session_id, info)
        finally:
            del self._restoring[session_id]
            done.set()

    async def _restore(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        assert self.session_store is not None
        self._check_admission()
        record = await self._store_call(
            self._sessions_guard, "session load", self.session_store.load, session_id
        )
        if record is None or record.principal != info.principal:
            return RestoreOutcome.NOT_FOUND
        try:
            request = Request(0, "initialize", record.initialize_params)
            client = parse_initialize(request)
        except ProtocolError:
            logger.warning("session %s: stored record is unusable", session_id)
            return RestoreOutcome.NOT_FOUND
        receipt = await self._admit_rate(info)
        session = await self._open(session_id, info, receipt)
        self._rate_receipts.pop(session_id, None)
        reply = await session.restore(request, client, record.log_level, record.subscriptions)
        if isinstance(reply, ErrorResponse):
            # The application refused the restore (or the session closed while
            # its hooks ran): the session is gone for good.
            if session.is_open:
                await self.close_session(session_id, CloseReason.ERROR)
            return RestoreOutcome.NOT_FOUND
        self._restored += 1
        logger.info(
            "session restored session_id=%s protocol_version=%s",
            session_id,
            client.protocol_version,
            extra={"session_id": session_id, "restored": True},
        )
        self._spawn(self._save, session)
        return RestoreOutcome.RESTORED

    # -- broadcast --------------------------------------------------------------------

    async def notify_resource_updated(self, uri: str) -> int:
        """Send ``notifications/resources/updated`` to every session subscribed to *uri*.

        Returns:
            How many sessions were notified.
        """
        count = 0
        for session in list(self._sessions.values()):
            if session.is_open and uri in session.subscriptions:
                await session.notify("notifications/resources/updated", {"uri": uri})
                count += 1
        await trio.lowlevel.checkpoint()
        return count

    async def notify_all(self, method: str, params: dict[str, object] | None = None) -> int:
        """Send a notification (e.g. ``notifications/tools/list_changed``) to every session."""
        count = 0
        for session in list(self._sessions.values()):
            if session.is_open and session.client_info is not None:
                await session.notify(method, dict(params) if params else None)
                count += 1
        await trio.lowlevel.checkpoint()
        return count

    # -- observability ----------------------------------------------------------------

    def statistics(self) -> ManagerStatistics:
        closed = sum(self._closed_by_reason.values())
        return ManagerStatistics(
            live_sessions=len(self._sessions),
            max_sessions=self.limits.max_sessions,
            created=self._created,
            closed=closed,
            closed_by_reason=dict(self._closed_by_reason),
            refused_by_reason=dict(self._refused),
            evicted=self._evicted,
            busy_sessions=len(self._busy_ids),
            restored=self._restored,
            store_errors=sum(guard.failures for guard in self._guards.values()),
            stores={name: guard.statistics() for name, guard in self._guards.items()},
            subscriptions=sum(len(s.subscriptions) for s in self._sessions.values()),
            requests_in_flight=sum(s.inflight for s in self._sessions.values()),
            dropped_readers=self._dropped_readers
            + sum(s.dropped_readers for s in self._sessions.values()),
        )

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The limiter whose borrowers are the live sessions (read-only use, please)."""
        return self._limiter
