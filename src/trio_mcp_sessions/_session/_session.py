"""One MCP session: its worker, its cancel scope, its handshake.

A session lives in its own :class:`trio.CancelScope` inside the manager's
nursery. Its handlers run in the session's own nursery, so closing the
session (cancelling the scope) ends every handler and every stream at once.
The scope's deadline *is* the idle timeout: the :class:`SessionClock` says
when, pushed forward on activity, suspended (``inf``) while a request is in
flight or a stream is attached; this module only applies it to the scope.

Its outbound streams are :mod:`._outbound`'s job, what the client sends
:mod:`._inbound`'s: both are mixins of :class:`Session`, each owning its slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, final

import trio

from .._interface import CloseReason, SessionInfo
from .._protocol._clock import SessionClock
from .._protocol._deadline import MAX_REQUEST_TIME, REQUEST_TIMEOUT
from .._protocol._jsonrpc import INTERNAL_ERROR, ErrorResponse, Request, Response
from .._protocol._lifecycle import ClientInfo, SessionState, SessionStateMachine
from .._server._errors import McpError
from .._stores._guard import STORE_TIMEOUT
from .._streams import WRITE_TIMEOUT
from ._inbound import _Inbound

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Set as AbstractSet

    from .._server._server import McpServer
    from .._stores._base import EventStore
    from .._stores._guard import StoreGuard

logger = logging.getLogger("trio_mcp_sessions.session")


def _is_cancellation(exc: BaseException) -> bool:
    """``Cancelled``, or a group holding nothing but ``Cancelled``."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot of one live session (see :meth:`BoundedSessionManager.session_statistics`).

    Attributes:
        session_id: The ``Mcp-Session-Id``.
        protocol_version: Negotiated by ``initialize`` (``None`` before it).
        state: The lifecycle state (``"new"``, ``"initialized"``, ``"operating"``).
        principal: The credential identity the session is bound to.
        created_at: When the session was created (:func:`trio.current_time`).
        last_activity: When the client last sent something.
        idle_deadline: When the session expires unless something happens
            (``inf`` while busy).
        busy: A request is in flight or a stream is attached.
        requests_in_flight: Requests whose handlers are running.
        attached_streams: HTTP responses reading the session's streams now.
        pending_client_requests: Server-to-client requests waiting for an answer.
        log_level: The client's ``logging/setLevel`` (``None``: everything).
        subscriptions: ``resources/subscribe`` URIs the session holds.
        is_restored: Brought back from a session store.
        dropped_readers: Responses dropped because their reader stalled.
        timed_out: Handlers cut by their deadline (``request_timeout``,
            ``max_request_time``), each answered that it timed out.
    """

    session_id: str
    protocol_version: str | None
    state: str
    principal: str | None
    created_at: float
    last_activity: float
    idle_deadline: float
    busy: bool
    requests_in_flight: int
    attached_streams: int
    pending_client_requests: int
    log_level: str | None
    subscriptions: frozenset[str]
    is_restored: bool
    dropped_readers: int
    timed_out: int = 0


class SessionEvents(Protocol):
    """What a session tells its owner, one method per event (the manager implements it).

    Each is called synchronously from the session's code, at the moment the
    fact changes, so the owner's table and records never lag behind.
    """

    def session_activity(self, session: Session, busy: bool) -> None:
        """The session's deadline moved: client activity, a request or stream came or went."""

    def session_state_changed(self, session: Session) -> None:
        """The state a session store keeps (log level, subscriptions) changed."""

    def session_closed(self, session: Session) -> None:
        """The session ended (``close_reason`` is set): forget it. Called once."""


@final
class Session(_Inbound):
    """The server side of one MCP session. Created and owned by a session manager.

    Slotted, and its GET stream is created on first use: an idle session is
    the unit of memory a server multiplies by its session cap.
    """

    __slots__ = (
        "_events",
        "_log_level",
        "_nursery",
        "_parked",
        "_queued",
        "_scope",
        "_subscriptions",
        "_worker",
        "client_info",
        "clock",
        "close_reason",
        "closed",
        "is_restored",
        "principal",
        "server",
        "session_id",
        "state",
    )

    def __init__(
        self,
        session_id: str,
        server: McpServer,
        *,
        event_store: EventStore | None,
        idle_timeout: float,
        init_timeout: float,
        retry_ms: int,
        events: SessionEvents,
        max_lifetime: float | None = None,
        principal: str | None = None,
        store_timeout: float = STORE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_inflight: int | None = None,
        store_guard: StoreGuard | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        max_request_time: float = MAX_REQUEST_TIME,
    ) -> None:
        self.session_id = session_id
        self.server = server
        #: The credential identity this session is bound to (``None``: unauthenticated).
        self.principal = principal
        self._init_outbound(
            event_store,
            retry_ms=retry_ms,
            store_timeout=store_timeout,
            write_timeout=write_timeout,
            store_guard=store_guard,
        )
        self._init_inbound(max_inflight, request_timeout, max_request_time)
        self._events = events
        #: The session's deadlines (sans-IO): this session applies them to its scope.
        self.clock = SessionClock(
            trio.current_time(),
            idle_timeout=idle_timeout,
            init_timeout=init_timeout,
            max_lifetime=max_lifetime,
        )
        self.state = SessionStateMachine()
        self.client_info: ClientInfo | None = None
        self._log_level: str | None = None
        self._subscriptions: set[str] = set()
        self.is_restored = False
        self.close_reason: CloseReason | None = None
        self.closed = trio.Event()
        self._scope = trio.CancelScope(deadline=self.clock.deadline())
        self._nursery: trio.Nursery | None = None
        self._worker: trio.lowlevel.Task | None = None
        self._parked = False
        self._queued: list[tuple[Any, tuple[Any, ...]]] | None = None

    # -- the worker ---------------------------------------------------------------------

    def _abort_park(self, _: object) -> trio.lowlevel.Abort:
        # Cancelled while parked (closed, expired): nobody may reschedule us now.
        self._parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def _spawn(self, fn: Any, *args: Any) -> None:
        """Start *fn* in the session's nursery, opening it if the session was idle."""
        if self._nursery is not None:
            try:
                self._nursery.start_soon(fn, *args)
                return
            except RuntimeError:
                pass  # its last handler just ended; the worker opens a new one
        if self._queued is None:
            self._queued = []
        self._queued.append((fn, args))
        if self._parked and self._worker is not None:
            self._parked = False
            trio.lowlevel.reschedule(self._worker)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's worker: lives until closed, idle or out of time.

        Never raises into the manager's nursery: a failure here ends this
        session (reason ``error``), not every session.
        """
        try:
            with self._scope:
                self._worker = trio.lowlevel.current_task()
                task_status.started()
                while True:
                    if not self._queued:
                        # Idle: park without a nursery (the nursery of an idle
                        # session would be most of its memory). _spawn wakes us.
                        self._parked = True
                        await trio.lowlevel.wait_task_rescheduled(self._abort_park)
                        if self.closed.is_set():
                            return  # close() finished the session while we were parked
                    # Handlers run in this nursery, inside the session's scope:
                    # closing the session cancels them, and the worker only
                    # finishes once they have.
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        queued, self._queued = self._queued, None
                        for fn, args in queued or ():
                            nursery.start_soon(fn, *args)
                    self._nursery = None
        except Exception:
            logger.exception("session %s failed", self.session_id)
            if self.close_reason is None:
                self.close_reason = CloseReason.ERROR
        except BaseException as exc:
            # Cancelled from outside its own scope: the manager's nursery is
            # going away, so this is a shutdown, not an error.
            if self.close_reason is None and _is_cancellation(exc):
                self.close_reason = CloseReason.SHUTDOWN
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        if self.closed.is_set():
            return  # finished by close() while the worker was parked
        if self.close_reason is None:
            if not self._scope.cancelled_caught:
                self.close_reason = CloseReason.ERROR
            else:  # our own deadline passed
                self.close_reason = CloseReason(self.clock.expiry_reason(trio.current_time()))
        self.state.close()
        self._end_all_streams()
        self.closed.set()
        self._events.session_closed(self)

    def close(self, reason: CloseReason) -> None:
        """End the session: cancels its handlers and ends its streams. Idempotent."""
        if self.close_reason is None:
            self.close_reason = reason
        if self._parked and self._worker is not None and not self.closed.is_set():
            # Idle: no handler, no nursery, nothing to cancel. Finish now (the
            # slot is free when this returns) and let the worker just return,
            # rather than waking it with a Cancelled to do the same.
            self._parked = False
            self._finish()
            trio.lowlevel.reschedule(self._worker)
            return
        self._scope.cancel()

    @property
    def is_open(self) -> bool:
        return self.close_reason is None and not self.closed.is_set()

    # -- deadlines ----------------------------------------------------------------------

    def _update_deadline(self) -> None:
        """Apply the clock's deadline to the session's scope."""
        if self.close_reason is not None:
            return
        clock = self.clock
        deadline = clock.deadline()
        if deadline != self._scope.deadline:  # re-registering a deadline is not free
            self._scope.deadline = deadline
        self._events.session_activity(self, clock.busy)

    @property
    def created_at(self) -> float:
        return self.clock.created_at

    @property
    def last_activity(self) -> float:
        return self.clock.last_activity

    @property
    def inflight(self) -> int:
        """Requests whose handlers are running."""
        return self.clock.inflight

    @property
    def busy(self) -> bool:
        """A request is in flight or a stream is attached (never evicted by the default policy)."""
        return self.clock.busy

    def touch(self) -> None:
        """Record client activity: pushes the idle deadline forward."""
        self.clock.activity(trio.current_time())
        self._update_deadline()

    def info(self) -> SessionInfo:
        # Initialized once initialize is answered (its hooks may still run
        # after client_info is known): the lifecycle's state says, one owner.
        return SessionInfo(
            self.session_id,
            self.client_info.protocol_version if self.client_info else None,
            self.state.state is not SessionState.NEW,
            self.principal,
        )

    def statistics(self) -> SessionStatistics:
        clock = self.clock
        return SessionStatistics(
            session_id=self.session_id,
            protocol_version=self.client_info.protocol_version if self.client_info else None,
            state=self.state.state.value,
            principal=self.principal,
            created_at=clock.created_at,
            last_activity=clock.last_activity,
            idle_deadline=self._scope.deadline,
            busy=clock.busy,
            requests_in_flight=clock.inflight,
            attached_streams=clock.streams,
            pending_client_requests=len(self._pending_replies),
            log_level=self._log_level,
            subscriptions=frozenset(self._subscriptions),
            is_restored=self.is_restored,
            dropped_readers=self.dropped_readers,
            timed_out=self.timed_out,
        )

    # -- the handshake --------------------------------------------------------------------

    async def initialize(self, request: Request, client: ClientInfo) -> Response | ErrorResponse:
        """Answer ``initialize``; on failure the caller closes the session."""
        self.client_info = client
        try:
            result = await self.server.initialize(
                client, is_restored=self.is_restored, timeout=self.clock.init_timeout
            )
        except McpError as exc:
            return ErrorResponse(request.id, exc.code, exc.message, exc.data)
        except trio.TooSlowError:
            return ErrorResponse(request.id, INTERNAL_ERROR, "initialize timed out")
        except Exception:
            logger.exception("initialize hook failed for session %s", self.session_id)
            return ErrorResponse(request.id, INTERNAL_ERROR, "Internal error")
        if not self.is_open:
            # The hooks run in the caller's task, so a close (init timeout,
            # shutdown) does not stop them; it ends the handshake here.
            return ErrorResponse(request.id, INTERNAL_ERROR, "Session closed during initialize")
        self.state.initialize_answered()
        self.touch()
        return Response(request.id, result)

    async def restore(
        self,
        request: Request,
        client: ClientInfo,
        log_level: str | None,
        subscriptions: Iterable[str],
    ) -> Response | ErrorResponse:
        """Replay ``initialize`` for a session brought back from a session store.

        The server's ``on_initialize`` hooks see ``is_restored=True``. The
        client already finished its handshake with the original process, so
        the session starts operating, with the stored log level and
        subscriptions.
        """
        self.is_restored = True
        reply = await self.initialize(request, client)
        if isinstance(reply, Response):
            self._log_level = log_level
            self._subscriptions = set(subscriptions)
            self.state.receive_notification("notifications/initialized")
            self.clock.use(trio.current_time())
            self._update_deadline()
        return reply

    # -- the state a session store keeps (the Peer protocol) ---------------------------

    @property
    def log_level(self) -> str | None:
        return self._log_level

    @property
    def subscriptions(self) -> AbstractSet[str]:
        return self._subscriptions

    def set_log_level(self, level: str) -> None:
        if level != self._log_level:
            self._log_level = level
            self._events.session_state_changed(self)

    def subscribe(self, uri: str) -> None:
        if uri not in self._subscriptions:
            self._subscriptions.add(uri)
            self._events.session_state_changed(self)

    def unsubscribe(self, uri: str) -> None:
        if uri in self._subscriptions:
            self._subscriptions.discard(uri)
            self._events.session_state_changed(self)

    def persisted_state(self) -> tuple[str | None, frozenset[str]]:
        """What a session store must keep up to date besides the handshake."""
        return self._log_level, frozenset(self._subscriptions)

    @property
    def protocol_version(self) -> str:
        assert self.client_info is not None
        return self.client_info.protocol_version

    @property
    def client(self) -> ClientInfo:
        assert self.client_info is not None
        return self.client_info
