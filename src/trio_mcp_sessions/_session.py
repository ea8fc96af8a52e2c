"""One MCP session: its worker, its handler tasks, its outbound SSE streams.

A session lives in its own :class:`trio.CancelScope` inside the manager's
nursery. Its handlers run in the session's own nursery, so closing the
session (cancelling the scope) ends every handler and every stream at once.
The scope's deadline *is* the idle timeout: pushed forward on activity,
suspended (``inf``) while a request is in flight or a stream is attached.

Outbound messages never touch a socket here. Each HTTP response attached to a
stream reads from a bounded buffer (an :class:`EventStream`); a producer that
finds it full waits for the reader (back-pressure, so a reader that keeps up
loses nothing), and a reader that takes nothing for the write timeout is
dropped: its client resumes with ``Last-Event-ID`` from the event store.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any, Final, final

import trio

from ._errors import EventsPurged, StoreUnavailable, TooManyInFlight, UnknownEventId
from ._interface import CloseReason, ReplyMode, RequestInfo
from ._protocol._clock import SessionClock
from ._protocol._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    ErrorResponse,
    Message,
    Notification,
    ProtocolError,
    Request,
    RequestId,
    Response,
    encode,
)
from ._protocol._lifecycle import (
    ClientInfo,
    SessionStateMachine,
    supports_priming,
)
from ._server._content import ClientRequestError, McpError
from ._server._context import CapabilityNotSupported, Context
from ._stores._guard import StoreGuard
from ._streams import STREAM_BUFFER, STREAM_BUFFER_BYTES, EventStream, SseEvent

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._server._server import McpServer
    from ._stores._base import EventStore

__all__ = [
    "STREAM_BUFFER",
    "STREAM_BUFFER_BYTES",
    "CloseReason",
    "EventStream",
    "ReplyMode",
    "RequestInfo",
    "Session",
    "SseEvent",
]

logger = logging.getLogger("trio_mcp_sessions.session")

#: Random per process: with a counter, names streams uniquely across instances.
_PROCESS_TAG = secrets.token_hex(6)
_stream_numbers = itertools.count(1)


def _new_process_tag() -> None:
    global _PROCESS_TAG
    _PROCESS_TAG = secrets.token_hex(6)


# A forked worker must not name streams like its parent and its siblings.
os.register_at_fork(after_in_child=_new_process_tag)

#: Client notifications the session handles itself, without a handler task.
_NOTIFICATIONS_WITHOUT_TASK: Final = frozenset(
    {"notifications/initialized", "notifications/cancelled"}
)


class _Stream:
    """An outbound SSE stream: a POST's (for its requests) or the standalone GET one."""

    __slots__ = (
        "_lock",
        "connection",
        "ever_attached",
        "pending",
        "reply_mode",
        "seq",
        "standalone",
        "stream_id",
    )

    def __init__(self, stream_id: str, *, standalone: bool, reply_mode: ReplyMode) -> None:
        self.stream_id = stream_id
        self.standalone = standalone
        self.reply_mode = reply_mode
        self.seq = 0
        self.pending: set[RequestId] = set()
        self.connection: EventStream | None = None
        self.ever_attached = False
        self._lock: trio.Lock | None = None

    @property
    def lock(self) -> trio.Lock:
        """Orders numbering with storing; made on first use (most streams never need it)."""
        if self._lock is None:
            self._lock = trio.Lock()
        return self._lock

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()

    def event_id(self, seq: int) -> str:
        return f"{self.stream_id}_{seq}"


class _PendingReply:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: ErrorResponse | None = None


def _is_cancellation(exc: BaseException) -> bool:
    """``Cancelled``, or a group holding nothing but ``Cancelled``."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False


def parse_event_id(event_id: str) -> tuple[str, int]:
    """Split ``"<stream>_<seq>"``; raise :class:`UnknownEventId` for anything else."""
    stream_id, sep, seq = event_id.rpartition("_")
    # ASCII digits only: str.isdigit() admits "¹²", which int() refuses.
    if not sep or not stream_id or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        raise UnknownEventId(f"malformed Last-Event-ID {event_id[:128]!r}")
    return stream_id, int(seq)


@final
class Session:
    """The server side of one MCP session. Created and owned by a session manager.

    Slotted, and its GET stream is created on first use: an idle session is
    the unit of memory a server multiplies by its session cap.
    """

    __slots__ = (
        "_inflight",
        "_max_inflight",
        "_notifying",
        "_nursery",
        "_on_activity",
        "_on_closed",
        "_on_state_changed",
        "_parked",
        "_pending_replies",
        "_queued",
        "_request_streams",
        "_scope",
        "_standalone_stream",
        "_streams",
        "_worker",
        "client_info",
        "clock",
        "close_reason",
        "closed",
        "dropped_readers",
        "event_store",
        "is_restored",
        "log_level",
        "principal",
        "retry_ms",
        "server",
        "session_id",
        "state",
        "store_failures",
        "store_guard",
        "store_timeout",
        "subscriptions",
        "write_timeout",
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
        on_closed: Any,
        max_lifetime: float | None = None,
        on_activity: Any = None,
        on_state_changed: Any = None,
        principal: str | None = None,
        store_timeout: float = 2.0,
        write_timeout: float = 30.0,
        max_inflight: int | None = None,
        store_guard: StoreGuard | None = None,
    ) -> None:
        self.session_id = session_id
        self.server = server
        #: The credential identity this session is bound to (``None``: unauthenticated).
        self.principal = principal
        self.store_timeout = store_timeout
        #: Seconds an attached response may take nothing before it is dropped.
        self.write_timeout = write_timeout
        self._max_inflight = max_inflight
        #: Responses dropped because their reader took nothing for ``write_timeout``.
        self.dropped_readers = 0
        #: The one bounded path of every event-store call (timeout, circuit breaker).
        self.store_guard = (
            store_guard if store_guard is not None else StoreGuard("events", timeout=store_timeout)
        )
        self._on_state_changed = on_state_changed
        self.event_store = event_store
        self.retry_ms = retry_ms
        #: The session's deadlines (sans-IO): this session applies them to its scope.
        self.clock = SessionClock(
            trio.current_time(),
            idle_timeout=idle_timeout,
            init_timeout=init_timeout,
            max_lifetime=max_lifetime,
        )
        self.state = SessionStateMachine()
        self.client_info: ClientInfo | None = None
        self.log_level: str | None = None
        self.subscriptions: set[str] = set()
        self.is_restored = False
        self.close_reason: CloseReason | None = None
        self.closed = trio.Event()
        self._on_closed = on_closed
        self._on_activity = on_activity
        self._scope = trio.CancelScope(deadline=self.clock.deadline())
        self._nursery: trio.Nursery | None = None
        self._worker: trio.lowlevel.Task | None = None
        self._parked = False
        self._queued: list[tuple[Any, tuple[Any, ...]]] | None = None
        self._streams: dict[str, _Stream] = {}
        self._request_streams: dict[RequestId, _Stream] = {}
        self._inflight: dict[RequestId, trio.CancelScope] = {}
        #: Notification handlers running (they count against the in-flight cap).
        self._notifying = 0
        self._pending_replies: dict[RequestId, _PendingReply] = {}
        self._standalone_stream: _Stream | None = None
        self.store_failures = 0

    @property
    def _standalone(self) -> _Stream:
        stream = self._standalone_stream
        if stream is None:
            stream = self._standalone_stream = self._new_stream(standalone=True, reply_mode="sse")
        return stream

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
        for stream in self._streams.values():
            if stream.connection is not None:
                stream.connection.end()
                stream.connection = None
        self._streams.clear()
        self._request_streams.clear()
        self.clock.streams = 0
        self.closed.set()
        self._on_closed(self)

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
        if self._on_activity is not None:
            self._on_activity(self, clock.busy)

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

    @property
    def idle_deadline(self) -> float:
        return self._scope.deadline

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
        self, request: Request, client: ClientInfo, log_level: str | None, subscriptions: Any
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
            self.log_level = log_level
            self.subscriptions = set(subscriptions)
            self.state.receive_notification("notifications/initialized")
            self.clock.use(trio.current_time())
            self._update_deadline()
        return reply

    def persisted_state(self) -> tuple[str | None, frozenset[str]]:
        """What a session store must keep up to date besides the handshake."""
        return self.log_level, frozenset(self.subscriptions)

    @property
    def protocol_version(self) -> str:
        assert self.client_info is not None
        return self.client_info.protocol_version

    @property
    def client(self) -> ClientInfo:
        assert self.client_info is not None
        return self.client_info

    # -- streams --------------------------------------------------------------------------

    def _new_stream(self, *, standalone: bool, reply_mode: ReplyMode) -> _Stream:
        # "g…" names a standalone (GET) stream, "r…" a request's stream: a
        # resume can tell them apart even after a restart or on another instance.
        # Unique within this process by the counter, and across processes
        # and restarts (a restored session keeps its stored streams) by the
        # process's random tag; no system call per stream.
        stream_id = f"{'g' if standalone else 'r'}{_PROCESS_TAG}{next(_stream_numbers):x}"
        stream = _Stream(stream_id, standalone=standalone, reply_mode=reply_mode)
        self._streams[stream_id] = stream
        return stream

    def _priming(self, stream: _Stream) -> SseEvent | None:
        if self.client_info is None or not supports_priming(self.protocol_version):
            return None
        return SseEvent(stream.event_id(stream.seq), b"", self.retry_ms)

    def _attach(self, stream: _Stream, replay: Sequence[SseEvent] = ()) -> EventStream:
        if stream.connection is not None:
            # The old response is presumably dead (the client reconnected).
            stream.connection.end()
            self.clock.streams -= 1

        def on_detach() -> None:
            if stream.connection is handle:
                stream.connection = None
                self.clock.streams -= 1
                self.touch()

        handle = EventStream(
            stream.stream_id,
            priming=self._priming(stream) if stream.reply_mode == "sse" else None,
            replay=replay,
            on_detach=on_detach,
        )
        stream.connection = handle
        stream.ever_attached = True
        self.clock.streams += 1
        self._update_deadline()
        return handle

    def _deliver(self, stream: _Stream, event: SseEvent, *, wait: bool) -> EventStream | None:
        """Queue *event* for the attached response.

        Returns the response when its producer must now wait for it (it is
        full), or, without *wait*, drop it (it was full before this event: an
        empty buffer always takes one event, however large).
        """
        connection = stream.connection
        if connection is None:
            return None
        if not wait and not connection.writable:
            return connection
        try:
            connection.put(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        return None if not wait or connection.writable else connection

    async def _wait_for_reader(self, connection: EventStream, wait: bool = True) -> None:
        """Back-pressure: wait while the response's buffer is full, within the write timeout.

        A reader that takes nothing for ``write_timeout`` seconds (or at once,
        without *wait*) is dropped; what it missed stays in the event store
        for its client to resume.
        """
        if not wait:
            connection.drop()
            dropped = True
        else:
            dropped = not await connection.wait_writable(self.write_timeout)
        if dropped:
            self.dropped_readers += 1
            logger.warning(
                "session %s: dropped a response whose reader %s%s",
                self.session_id,
                f"took nothing for {self.write_timeout} s" if wait else "fell behind a broadcast",
                "" if self.event_store is not None else " (no event store: its events are lost)",
            )

    async def _emit(
        self, stream: _Stream, message: Message | bytes, *, wait_for_reader: bool = True
    ) -> None:
        data = message if isinstance(message, bytes) else encode(message)
        if self.closed.is_set():
            return  # nothing may be stored for a session that is gone
        store = self.event_store if stream.reply_mode == "sse" else None
        append_nowait = getattr(store, "append_nowait", None)
        if store is None or (append_nowait is not None and not stream.locked):
            # Nothing to store, or a store that never blocks (in memory):
            # numbering, storing and delivery happen without yielding, so the
            # order is the order of the calls and no lock is needed. A resume
            # or first GET replaying under the lock makes us take the slow path.
            stream.seq += 1
            if append_nowait is not None:
                try:
                    append_nowait(self.session_id, stream.stream_id, stream.seq, data)
                except StoreUnavailable as exc:
                    self._store_failed(f"unavailable: {exc}")
            full = self._deliver(
                stream, SseEvent(stream.event_id(stream.seq), data), wait=wait_for_reader
            )
            if full is not None:
                await self._wait_for_reader(full, wait_for_reader)
            return
        async with stream.lock:
            stream.seq += 1
            seq = stream.seq
            # Bounded (store_timeout; at once while the store is known to be
            # down): the event still goes out live; only its replay is lost.
            try:
                await self.store_guard.call(
                    "event append", store.append, self.session_id, stream.stream_id, seq, data
                )
            except StoreUnavailable as exc:
                self._store_failed(f"unavailable: {exc}")
            full = self._deliver(stream, SseEvent(stream.event_id(seq), data), wait=wait_for_reader)
        if full is not None:
            # Outside the lock: the event is queued in order already, and a
            # resume (which takes the lock to replace this reader) must not
            # wait for the reader it replaces.
            await self._wait_for_reader(full, wait_for_reader)

    def _store_failed(self, why: str) -> None:
        # The store guard already counted and logged it (once, not per event
        # while the circuit is open).
        self.store_failures += 1
        logger.debug("session %s: event store %s", self.session_id, why)

    def _end_stream(self, stream: _Stream) -> None:
        self._streams.pop(stream.stream_id, None)
        if stream.connection is not None:
            stream.connection.end()

    # -- client -> server ---------------------------------------------------------------

    def open_request_stream(
        self, requests: Sequence[Request], info: RequestInfo, reply_mode: ReplyMode
    ) -> EventStream:
        """Start handlers for *requests*; their answers arrive on the returned stream.

        Raises:
            TooManyInFlight: Running them would exceed the session's in-flight
                cap; none is started.
            ProtocolError: A request is not allowed in the session's state, or
                reuses the id of a request still in flight.
        """
        if self._max_inflight is not None and len(self._inflight) + len(requests) > (
            self._max_inflight
        ):
            raise TooManyInFlight(
                f"this session has {len(self._inflight)} requests in flight "
                f"(at most {self._max_inflight}); retry when some are answered",
                retry_after=1.0,
            )
        ids: set[RequestId] = set()
        for request in requests:
            self.state.check_request(request)
            if request.id in self._inflight or request.id in ids:
                raise ProtocolError(
                    INVALID_REQUEST,
                    f"Invalid Request: id {request.id!r} is already in use",
                    request_id=request.id,
                )
            ids.add(request.id)
        self.clock.use(trio.current_time())
        stream = self._new_stream(standalone=False, reply_mode=reply_mode)
        stream.pending = ids
        handle = self._attach(stream)
        for request in requests:
            scope = trio.CancelScope()
            self._inflight[request.id] = scope
            self.clock.inflight += 1
            self._request_streams[request.id] = stream
            self._spawn(self._run_handler, stream, request, info, scope)
        self._update_deadline()
        return handle

    async def _run_handler(
        self, stream: _Stream, request: Request, info: RequestInfo, scope: trio.CancelScope
    ) -> None:
        params = request.params or {}
        meta = params.get("_meta")
        ctx = Context(
            self,
            request.id,
            meta if isinstance(meta, dict) else None,
            default_timeout=self.server.request_timeout,
        )
        reply: Response | ErrorResponse | None = None
        before = self.persisted_state()
        try:
            with scope:
                try:
                    result = await self.server.handle_request(request, ctx, self)
                    reply = Response(request.id, result)
                except McpError as exc:
                    reply = ErrorResponse(request.id, exc.code, exc.message, exc.data)
                except ProtocolError as exc:
                    reply = ErrorResponse(request.id, exc.code, exc.message, exc.data)
                except CapabilityNotSupported as exc:
                    reply = ErrorResponse(request.id, INVALID_REQUEST, str(exc))
                except trio.TooSlowError:
                    reply = ErrorResponse(
                        request.id, INTERNAL_ERROR, "Timed out waiting for the client"
                    )
                except Exception:
                    logger.exception(
                        "session %s: handler for %r failed", self.session_id, request.method
                    )
                    reply = ErrorResponse(request.id, INTERNAL_ERROR, "Internal error")
                try:
                    data = encode(reply)
                except (TypeError, ValueError):
                    logger.exception(
                        "session %s: result of %r is not JSON", self.session_id, request.method
                    )
                    data = encode(
                        ErrorResponse(request.id, INTERNAL_ERROR, "Result is not serializable")
                    )
                if self._on_state_changed is not None and self.persisted_state() != before:
                    self._on_state_changed(self)
                await self._emit(stream, data)
        finally:
            if self._inflight.pop(request.id, None) is not None:
                self.clock.inflight -= 1
            self._request_streams.pop(request.id, None)
            stream.pending.discard(request.id)
            if not stream.pending:
                self._end_stream(stream)
            self.touch()

    def accept_all(self, messages: Sequence[Message]) -> None:
        """Take notifications and responses, or none of them if their tasks would not fit.

        Each notification other than ``initialized`` and ``cancelled`` runs
        the server's handler in a task of its own: those tasks count against
        the in-flight cap beside the requests' handlers.

        Raises:
            TooManyInFlight: Their handlers would not fit; none was taken.
        """
        tasks = sum(
            isinstance(m, Notification) and m.method not in _NOTIFICATIONS_WITHOUT_TASK
            for m in messages
        )
        if (
            tasks
            and self._max_inflight is not None
            and self._notifying + tasks > self._max_inflight
        ):
            raise TooManyInFlight(
                f"this session runs {self._notifying} notification handlers "
                f"(at most {self._max_inflight}); retry when some are done",
                retry_after=1.0,
            )
        for message in messages:
            self.accept(message)

    def accept(self, message: Message) -> None:
        """Take a notification or a response from the client (answered with 202)."""
        self.clock.activity(trio.current_time())
        if isinstance(message, Notification):
            self._accept_notification(message)
        elif isinstance(message, (Response, ErrorResponse)):
            pending = self._pending_replies.get(message.id) if message.id is not None else None
            if pending is None:
                logger.debug(
                    "session %s: response to unknown request %r", self.session_id, message.id
                )
            elif not pending.done.is_set():
                if isinstance(message, Response):
                    pending.result = message.result
                else:
                    pending.error = message
                pending.done.set()
        self._update_deadline()

    def _accept_notification(self, notification: Notification) -> None:
        params = notification.params or {}
        if notification.method == "notifications/initialized":
            self.state.receive_notification(notification.method)
            self.clock.used = True  # accept() recorded the activity
        elif notification.method == "notifications/cancelled":
            request_id = params.get("requestId")
            scope = self._inflight.get(request_id) if isinstance(request_id, (str, int)) else None
            if scope is not None:
                scope.cancel()
                logger.debug(
                    "session %s: request %r cancelled by the client (%s)",
                    self.session_id,
                    request_id,
                    params.get("reason"),
                )
        elif self.close_reason is None:
            self._notifying += 1
            self._spawn(self._run_notification_handler, notification)

    async def _run_notification_handler(self, notification: Notification) -> None:
        try:
            await self.server.handle_notification(notification, self)
        except Exception:
            logger.exception(
                "session %s: notification handler for %r failed",
                self.session_id,
                notification.method,
            )
        finally:
            self._notifying -= 1

    async def open_standalone_stream(self) -> EventStream | None:
        """Attach a GET response to the standalone stream, or ``None`` if one is attached.

        The first GET of a session also receives what was sent before any GET
        was open (for example, JSON-mode logs of an earlier call), as far as
        the event store kept it: those messages were waiting for a listener.
        """
        stream = self._standalone
        if stream.connection is not None:
            return None
        self.clock.used = True  # busy while attached; the detach counts as activity
        if stream.ever_attached or self.event_store is None or stream.seq == 0:
            return self._attach(stream)
        async with stream.lock:
            if stream.connection is not None:
                return None
            try:
                stored = await self.store_guard.call(
                    "event replay",
                    self.event_store.replay_after,
                    self.session_id,
                    stream.stream_id,
                    0,
                )
            except (EventsPurged, StoreUnavailable):
                stored = ()
            replay = [SseEvent(stream.event_id(e.seq), e.data) for e in stored]
            return self._attach(stream, replay)

    async def resume(self, last_event_id: str) -> EventStream:
        """Reattach a client to a stream after ``Last-Event-ID``, replaying what it missed.

        Raises:
            UnknownEventId: The id names no stream of this session.
            EventsPurged: The store no longer holds everything after the id.
        """
        stream_id, after = parse_event_id(last_event_id)
        stream = self._streams.get(stream_id)
        if self.event_store is None:
            if stream is None:
                raise UnknownEventId("this server keeps no events to resume from")
            replay: Sequence[SseEvent] = ()
            async with stream.lock:
                if after != stream.seq:
                    raise EventsPurged("this server keeps no events to replay")
                return self._attach(stream)
        if stream is None:
            # A finished stream, or one from before a restore (another process
            # wrote it): replay what the store holds.
            stored = await self.store_guard.call(
                "event replay", self.event_store.replay_after, self.session_id, stream_id, after
            )
            replay = [SseEvent(f"{stream_id}_{e.seq}", e.data) for e in stored]
            if stream_id.startswith("g"):
                # An earlier GET stream: after its backlog, this response goes on
                # as the session's live GET stream.
                if self._standalone.connection is not None:
                    raise UnknownEventId("this session already has an open GET stream")
                self.clock.used = True
                handle = self._attach(self._standalone, replay)
                handle.priming = None
                return handle
            if not stored:
                raise UnknownEventId(f"no stream {stream_id!r} to resume in this session")
            finished = EventStream(stream_id, replay=replay)
            finished.end()
            return finished
        if stream.reply_mode != "sse":
            raise UnknownEventId("JSON replies cannot be resumed")
        async with stream.lock:
            if after > stream.seq:
                raise UnknownEventId(f"Last-Event-ID {last_event_id!r} is from the future")
            stored = await self.store_guard.call(
                "event replay", self.event_store.replay_after, self.session_id, stream_id, after
            )
            if [e.seq for e in stored] != list(range(after + 1, stream.seq + 1)):
                # This process knows the stream's length: anything short of
                # every event after the id is a gap, whatever the store said.
                raise EventsPurged(
                    f"stream {stream_id!r}: events {after + 1}..{stream.seq} are not all stored"
                )
            replay = [SseEvent(stream.event_id(e.seq), e.data) for e in stored]
            self.clock.used = True
            handle = self._attach(stream, replay)
            handle.priming = None
            return handle

    def end_connections(self, retry_ms: int, *, standalone_only: bool = False) -> None:
        """Send a reconnect hint on attached responses and end them (graceful drain).

        With *standalone_only*, only the GET stream: request streams then carry
        their answers to the end.
        """
        for stream in list(self._streams.values()):
            connection = stream.connection
            if connection is None or (standalone_only and not stream.standalone):
                continue
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                connection.put(SseEvent(None, b"", retry_ms))  # through, full or not
            connection.end()

    # -- the Peer protocol (for Context) -----------------------------------------------

    def close_request_stream(self, request_id: RequestId) -> None:
        """End the HTTP response carrying *request_id* (SEP-1699 polling)."""
        stream = self._request_streams.get(request_id)
        if stream is None or stream.connection is None or stream.reply_mode != "sse":
            return
        if self.event_store is None:
            return  # the client could not get the rest back
        stream.connection.end()

    def _stream_for(self, related_request: RequestId | None) -> _Stream:
        if related_request is not None:
            stream = self._request_streams.get(related_request)
            if stream is not None and stream.reply_mode == "sse":
                return stream
        return self._standalone

    async def send_notification(
        self, notification: Notification, *, related_request: RequestId | None
    ) -> None:
        await self._emit(self._stream_for(related_request), notification)
        # A schedule point even when nothing was awaited: a handler that only
        # logs or reports progress must not starve the other tasks.
        await trio.lowlevel.checkpoint()

    async def send_request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, Any]:
        request_id = self.state.next_outbound_id()
        pending = _PendingReply()
        self._pending_replies[request_id] = pending
        stream = self._stream_for(related_request)
        try:
            await self._emit(stream, Request(request_id, method, params))
            try:
                with trio.fail_after(timeout):
                    await pending.done.wait()
            except trio.TooSlowError:
                await self._emit(
                    stream,
                    Notification(
                        "notifications/cancelled",
                        {"requestId": request_id, "reason": f"no answer within {timeout} s"},
                    ),
                )
                raise
        finally:
            del self._pending_replies[request_id]
        if pending.error is not None:
            raise ClientRequestError(pending.error.code, pending.error.message, pending.error.data)
        assert pending.result is not None
        return pending.result

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification on the standalone (GET) stream, never waiting for its reader.

        A broadcast goes to every session in turn: one stalled reader must not
        hold the others' notifications up, so a reader with a full buffer is
        dropped at once (its client resumes with ``Last-Event-ID``).
        """
        await self._emit(self._standalone, Notification(method, params), wait_for_reader=False)
        await trio.lowlevel.checkpoint()
