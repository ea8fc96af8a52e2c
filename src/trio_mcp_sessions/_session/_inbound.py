"""A session's inbound side: handler tasks, client messages, server-to-client requests.

Each request runs its handler in a task of the session's nursery, inside a
cancel scope of its own (``notifications/cancelled`` cancels it, with no
answer), under a deadline (``request_timeout``, pushed on by progress up to
``max_request_time``: it cuts the handler with an answer that says so);
whatever it raises becomes a JSON-RPC reply in one place, :func:`error_reply`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import trio

from .._errors import TooManyInFlight
from .._protocol._jsonrpc import (
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
from .._server._context import Context
from .._server._errors import CapabilityNotSupported, ClientRequestError, failure
from ._outbound import _Outbound, _OutboundStream

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from collections.abc import Set as AbstractSet

    from .._interface import CloseReason, ReplyMode, RequestInfo
    from .._protocol._lifecycle import ClientInfo, SessionStateMachine
    from .._server._context import InputRequest
    from .._server._server import McpServer
    from .._streams import EventStream

logger = logging.getLogger("trio_mcp_sessions.session")

#: Client notifications the session handles itself, without a handler task.
_NOTIFICATIONS_WITHOUT_TASK: Final = frozenset(
    {"notifications/initialized", "notifications/cancelled"}
)


class _PendingReply:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: ErrorResponse | None = None


def error_reply(request: Request, exc: Exception, session_id: str) -> ErrorResponse:
    """The JSON-RPC answer to a request whose handler raised *exc* (mapped by :func:`failure`).

    Called from inside the ``except`` block, so an unexpected error is logged
    with its traceback; the client only sees ``Internal error``.
    """
    answer = failure(exc)
    if answer.log == "traceback":
        logger.exception("session %s: handler for %r failed", session_id, request.method)
    return ErrorResponse(request.id, answer.code, answer.message, answer.data)


class _Inbound(_Outbound):
    """The inbound half of :class:`Session`: what the client sends, and its replies.

    Built on the outbound half (handlers answer on request streams). It owns
    the slots below; the annotations after them are the session's, read here.
    """

    __slots__ = (
        "_inflight",
        "_max_inflight",
        "_max_request_time",
        "_notifying",
        "_pending_replies",
        "_request_timeout",
        "timed_out",
    )

    server: McpServer
    state: SessionStateMachine
    close_reason: CloseReason | None
    is_restored: bool
    principal: str | None

    if TYPE_CHECKING:
        # The rest of the Peer protocol lives in Session (it owns that state).

        @property
        def client(self) -> ClientInfo: ...

        @property
        def log_level(self) -> str | None: ...

        @property
        def subscriptions(self) -> AbstractSet[str]: ...

        def set_log_level(self, level: str) -> None: ...

        def subscribe(self, uri: str) -> None: ...

        def unsubscribe(self, uri: str) -> None: ...

        def _spawn(self, fn: Any, *args: Any) -> None: ...

    def _init_inbound(
        self, max_inflight: int | None, request_timeout: float, max_request_time: float
    ) -> None:
        self._max_inflight = max_inflight
        self._request_timeout = request_timeout
        self._max_request_time = max_request_time
        #: Handlers cut by their deadline (each answered that it timed out).
        self.timed_out = 0
        self._inflight: dict[RequestId, trio.CancelScope] = {}
        #: Notification handlers running (they count against the in-flight cap).
        self._notifying = 0
        self._pending_replies: dict[RequestId, _PendingReply] = {}

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
        self, stream: _OutboundStream, request: Request, info: RequestInfo, scope: trio.CancelScope
    ) -> None:
        params = request.params or {}
        meta = params.get("_meta")
        ctx = Context(
            self,
            request.id,
            meta if isinstance(meta, dict) else None,
            default_timeout=self.server.request_timeout,
            request_timeout=self._request_timeout,
            max_request_time=self._max_request_time,
            principal=self.principal,
            token=info.token,
            scope_filter=info.scope_filter,
        )
        reply: Response | ErrorResponse | None = None
        try:
            with scope:
                try:
                    result = await self.server.handle_request(request, ctx, self)
                    reply = Response(request.id, result)
                except Exception as exc:  # Cancelled is not an Exception: it goes through
                    reply = error_reply(request, exc, self.session_id)
                finally:
                    if ctx.timed_out:  # answered, unlike notifications/cancelled
                        self.timed_out += 1
                try:
                    data = encode(reply)
                except (TypeError, ValueError):
                    logger.exception(
                        "session %s: result of %r is not JSON", self.session_id, request.method
                    )
                    data = encode(
                        ErrorResponse(request.id, INTERNAL_ERROR, "Result is not serializable")
                    )
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

    # -- server -> client requests (the Peer protocol) ---------------------------------

    async def request_input(
        self,
        requests: Mapping[str, InputRequest],
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, dict[str, Any]]:
        """In a session, input requests are server-to-client requests, sent together."""
        for request in requests.values():
            if not self.client.has_capability(request.capability, request.sub):
                raise CapabilityNotSupported(
                    f"the client did not declare the {request.capability!r} capability"
                )
        answers: dict[str, dict[str, Any]] = {}

        async def ask(key: str, request: InputRequest) -> None:
            answers[key] = await self.send_request(
                request.method, request.params, related_request=related_request, timeout=timeout
            )

        if len(requests) == 1:
            [(key, request)] = requests.items()
            await ask(key, request)
            return answers
        try:
            async with trio.open_nursery() as nursery:
                for key, request in requests.items():
                    nursery.start_soon(ask, key, request)
        except BaseExceptionGroup as group:
            # One failed (the others were cancelled): raise it, as one request would.
            _, rest = group.split(trio.Cancelled)
            first = _first_leaf(rest) if rest is not None else None
            if first is None:
                raise
            raise first from None
        return answers

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


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaf = _first_leaf(exc)
            if leaf is not None:
                return leaf
        else:
            return exc
    return None
