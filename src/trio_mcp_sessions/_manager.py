"""The session-manager interface and the bounded, nursery-scoped manager.

The transport talks to sessions only through :class:`SessionManager` (the
shape of rmcp's ``SessionManager`` trait, in trio terms), so an application
can plug in its own. :class:`BoundedSessionManager` is ours: every session's
worker runs in its own cancel scope inside the manager's nursery, and a
:class:`trio.CapacityLimiter` holds one token per live session, so the cap
is exact even under concurrent creation.
"""

from __future__ import annotations

import enum
import logging
import math
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, final, runtime_checkable

import trio

from ._errors import ServiceUnavailable, SessionNotFound, TooManySessions
from ._protocol._jsonrpc import ErrorResponse, Message, Request, Response
from ._session import CloseReason, EventStream, ReplyMode, RequestInfo, Session
from ._stores._memory import InMemoryEventStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from ._protocol._lifecycle import ClientInfo
    from ._server._server import McpServer
    from ._stores._base import EventStore

__all__ = [
    "BoundedSessionManager",
    "ManagerStatistics",
    "RestoreOutcome",
    "SessionInfo",
    "SessionLimits",
    "SessionManager",
]

logger = logging.getLogger("trio_mcp_sessions.manager")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds on sessions. Invalid values are refused here, at construction.

    Attributes:
        max_sessions: Live sessions at most (exact). Default 10,000.
        idle_timeout: Seconds without activity before a session ends; the
            clock stops while a request is in flight or a stream is open.
        init_timeout: Seconds a new session has to be used after
            ``initialize`` (``initialized``, a request or a stream) before it
            is dropped.
    """

    max_sessions: int = 10_000
    idle_timeout: float = 600.0
    init_timeout: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_sessions, bool) or not isinstance(self.max_sessions, int):
            raise TypeError("max_sessions must be an int")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        for name in ("idle_timeout", "init_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds")
            if not value > 0 or math.isnan(value):
                raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A read-only view of a live session, for the transport and for users."""

    session_id: str
    protocol_version: str | None
    initialized: bool


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A snapshot of the manager's counters (see :meth:`BoundedSessionManager.statistics`)."""

    live_sessions: int
    max_sessions: int
    created: int
    closed: int
    closed_by_reason: dict[str, int] = field(default_factory=dict)


class RestoreOutcome(enum.Enum):
    """What :meth:`SessionManager.restore_session` achieved."""

    RESTORED = "restored"
    ALREADY_PRESENT = "already_present"
    NOT_FOUND = "not_found"
    NOT_SUPPORTED = "not_supported"


@runtime_checkable
class SessionManager(Protocol):
    """What the HTTP transport needs from sessions (rmcp's trait, for trio).

    Every method that names a session raises :class:`SessionNotFound` when it
    is not live. Methods never touch HTTP; the transport maps errors to
    statuses.
    """

    async def create_session(self, info: RequestInfo) -> str:
        """Allocate a session (a slot under the cap) and return its id.

        Raises:
            TooManySessions: At the cap with nothing to evict.
            ServiceUnavailable: Not running, or draining.
        """
        ...

    async def initialize_session(
        self, session_id: str, request: Request, client: ClientInfo, info: RequestInfo
    ) -> Response | ErrorResponse:
        """Answer ``initialize``. On an error answer the session is already closed."""
        ...

    def get_session(self, session_id: str) -> SessionInfo | None:
        """The live session, or ``None``."""
        ...

    async def has_session(self, session_id: str) -> bool: ...

    async def close_session(self, session_id: str, reason: CloseReason) -> None:
        """Close a session and wait until nothing of it remains."""
        ...

    async def create_stream(
        self,
        session_id: str,
        requests: Sequence[Request],
        info: RequestInfo,
        reply_mode: ReplyMode,
    ) -> EventStream:
        """Start handling client requests; their answers come on the stream."""
        ...

    async def accept_messages(
        self, session_id: str, messages: Sequence[Message], info: RequestInfo
    ) -> None:
        """Take client notifications and responses (no answer)."""
        ...

    async def create_standalone_stream(self, session_id: str) -> EventStream | None:
        """Attach the GET stream; ``None`` when one is already attached."""
        ...

    async def resume(self, session_id: str, last_event_id: str) -> EventStream:
        """Reattach after ``Last-Event-ID`` (raises ``UnknownEventId``/``EventsPurged``)."""
        ...

    async def restore_session(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        """Bring back a session this process does not hold (from a session store)."""
        ...

    def begin_drain(self) -> None:
        """Stop admitting sessions and end open streams with a reconnect hint."""
        ...


class _Default:
    """Sentinel type: "use the default event store"."""


DEFAULT: _Default = _Default()


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
        limits: Caps and timeouts (:class:`SessionLimits`).
        event_store: Where SSE events wait for resumption. The default is a
            bounded :class:`InMemoryEventStore`; ``None`` turns resumption off.
        retry_ms: The ``retry`` hint (milliseconds) sent on SSE streams.
        on_session_closed: Called as ``fn(session_id, reason)`` after a close.
    """

    def __init__(
        self,
        server: McpServer,
        *,
        limits: SessionLimits | None = None,
        event_store: EventStore | _Default | None = DEFAULT,
        retry_ms: int = 1000,
        on_session_closed: Callable[[str, CloseReason], None] | None = None,
    ) -> None:
        self.server = server
        self.limits = limits if limits is not None else SessionLimits()
        self.event_store: EventStore | None = (
            InMemoryEventStore() if isinstance(event_store, _Default) else event_store
        )
        self.retry_ms = retry_ms
        self._on_session_closed = on_session_closed
        self._limiter = trio.CapacityLimiter(self.limits.max_sessions)
        self._sessions: dict[str, Session] = {}
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._draining = False
        self._created = 0
        self._closed_by_reason: Counter[str] = Counter()

    # -- running --------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[BoundedSessionManager] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve sessions until :meth:`aclose`; then close every session (``shutdown``)."""
        if self._nursery is not None or self._stopped.is_set():
            raise RuntimeError("a session manager runs once")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                try:
                    await self._stopped.wait()
                finally:
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
        self._draining = True
        for session in list(self._sessions.values()):
            session.end_connections(self.retry_ms)

    @property
    def draining(self) -> bool:
        return self._draining

    # -- the table ------------------------------------------------------------------

    def _live(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or not session.is_open:
            raise SessionNotFound(session_id)
        return session

    def _session_closed(self, session: Session) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
        self._limiter.release_on_behalf_of(session.session_id)
        reason = session.close_reason or CloseReason.ERROR
        self._closed_by_reason[reason.value] += 1
        if self.event_store is not None:
            delete_nowait = getattr(self.event_store, "delete_session_nowait", None)
            if delete_nowait is not None:
                delete_nowait(session.session_id)
            elif self._nursery is not None:
                self._nursery.start_soon(self._delete_events, session.session_id)
        logger.info(
            "session closed session_id=%s reason=%s lifetime=%.3fs",
            session.session_id,
            reason.value,
            trio.current_time() - session.created_at,
            extra={"session_id": session.session_id, "reason": reason.value},
        )
        if self._on_session_closed is not None:
            try:
                self._on_session_closed(session.session_id, reason)
            except Exception:
                logger.exception("on_session_closed hook failed")

    async def _delete_events(self, session_id: str) -> None:
        assert self.event_store is not None
        try:
            await self.event_store.delete_session(session_id)
        except Exception:
            logger.exception("could not delete stored events of session %s", session_id)

    # -- SessionManager -------------------------------------------------------------

    async def create_session(self, info: RequestInfo) -> str:
        await trio.lowlevel.checkpoint()
        nursery = self._nursery
        if nursery is None:
            raise ServiceUnavailable("the session manager is not running")
        if self._draining:
            raise ServiceUnavailable("the server is shutting down", retry_after=5.0)
        session_id = new_session_id()
        try:
            self._limiter.acquire_on_behalf_of_nowait(session_id)
        except trio.WouldBlock:
            raise TooManySessions(
                f"session limit ({self.limits.max_sessions}) reached", retry_after=5.0
            ) from None
        session = Session(
            session_id,
            self.server,
            event_store=self.event_store,
            idle_timeout=self.limits.idle_timeout,
            init_timeout=self.limits.init_timeout,
            retry_ms=self.retry_ms,
            on_closed=self._session_closed,
        )
        self._sessions[session_id] = session
        self._created += 1
        try:
            await nursery.start(session.run)
        except BaseException:
            # Never leak the slot, even when cancelled before the worker ran.
            if self._sessions.get(session_id) is session and not session.closed.is_set():
                del self._sessions[session_id]
                self._limiter.release_on_behalf_of(session_id)
            raise
        return session_id

    async def initialize_session(
        self, session_id: str, request: Request, client: ClientInfo, info: RequestInfo
    ) -> Response | ErrorResponse:
        session = self._live(session_id)
        reply = await session.initialize(request, client)
        if isinstance(reply, ErrorResponse):
            await self.close_session(session_id, CloseReason.ERROR)
        else:
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
        return reply

    def get_session(self, session_id: str) -> SessionInfo | None:
        session = self._sessions.get(session_id)
        if session is None or not session.is_open:
            return None
        return SessionInfo(
            session_id,
            session.client_info.protocol_version if session.client_info else None,
            session.client_info is not None,
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
        session = self._live(session_id)
        session.close(reason)
        # The slot is free when this returns: wait for the worker to finish.
        with trio.CancelScope(shield=True):
            await session.closed.wait()

    async def create_stream(
        self,
        session_id: str,
        requests: Sequence[Request],
        info: RequestInfo,
        reply_mode: ReplyMode,
    ) -> EventStream:
        await trio.lowlevel.checkpoint()
        return self._live(session_id).open_request_stream(requests, info, reply_mode)

    async def accept_messages(
        self, session_id: str, messages: Sequence[Message], info: RequestInfo
    ) -> None:
        await trio.lowlevel.checkpoint()
        session = self._live(session_id)
        for message in messages:
            session.accept(message)

    async def create_standalone_stream(self, session_id: str) -> EventStream | None:
        await trio.lowlevel.checkpoint()
        return self._live(session_id).open_standalone_stream()

    async def resume(self, session_id: str, last_event_id: str) -> EventStream:
        await trio.lowlevel.checkpoint()
        return await self._live(session_id).resume(last_event_id)

    async def restore_session(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        await trio.lowlevel.checkpoint()
        if self.get_session(session_id) is not None:
            return RestoreOutcome.ALREADY_PRESENT
        return RestoreOutcome.NOT_SUPPORTED

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
        )

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The limiter whose borrowers are the live sessions (read-only use, please)."""
        return self._limiter
