"""Runs 2026-07-28 requests: each handler in its own cancel scope in one nursery.

Like a session's handlers, a sessionless request's handler runs in a task of
a nursery that the service owns (started with the app), inside a cancel
scope of its own: the client leaving (its response's stream detached) cancels
it, and so does the end of the grace period at shutdown; the request's
deadline (``request_timeout``, pushed on by progress up to
``max_request_time``) cuts it with an answer that says so. Questions the
handler asks the client become input-required rounds, carried by a
``requestState`` this service seals and checks.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio

from .._errors import ServiceUnavailable
from .._protocol._deadline import MAX_REQUEST_TIME, REQUEST_TIMEOUT, check_deadlines
from .._protocol._era import META_SERVER_INFO
from .._protocol._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ErrorResponse,
    ProtocolError,
    Request,
    Response,
    encode,
)
from .._protocol._request_state import (
    InvalidRequestState,
    PendingTooLong,
    RequestStateBinding,
    RequestStateCodec,
    RequestStateTooLarge,
    TooManyRounds,
    UsedStates,
    json_size_over,
)
from .._protocol._subscriptions import SubscriptionFilter
from .._server._context import Context
from .._server._errors import failure
from .._streams import EventStream, SseEvent
from ._listen import ListenHub, ListenLimits
from ._peer import INPUT_METHODS, StatelessPeer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._interface import RequestInfo
    from .._protocol._era import ModernRequest
    from .._server._server import McpServer

__all__ = ["Exchange", "SessionlessService", "SessionlessStatistics"]

logger = logging.getLogger("trio_mcp_sessions.sessionless")

_NAME_FIELD: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def _client_address(info: RequestInfo) -> str | None:
    return info.client_address


@final
class Exchange:
    """One sessionless request as its HTTP response sees it: the events, then the outcome.

    Attributes:
        stream: Notifications, then the one reply (the last event).
        error_code: The reply's JSON-RPC error code, set before the reply is
            put on the stream (``None``: a result), so that a response that
            has not started yet can answer with the right HTTP status.
    """

    __slots__ = ("error_code", "stream")

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.error_code: int | None = None


@dataclass(frozen=True, slots=True)
class SessionlessStatistics:
    """What the sessionless service did (see :meth:`SessionlessService.statistics`).

    Attributes:
        requests_in_flight: Handlers running now.
        answered: Requests answered with a complete result.
        input_required: Requests answered with an ``InputRequiredResult``.
        errors: Requests answered with a JSON-RPC error.
        cancelled: Requests whose client left before the answer (nothing was sent).
        refused_states: ``requestState`` tokens refused (tampered, expired, replayed...).
        refused_states_by_reason: The same, by :data:`RequestStateReason`
            (``pending_too_long``: over ``max_pending`` across the rounds).
        refused_inputs: Retries refused because their ``inputResponses`` was
            over ``RequestStateCodec.max_input_bytes`` (before anything else).
        timed_out: Handlers cut by their deadline, answered all the same (an
            ``isError`` result for a tool, counted in *answered*; a JSON-RPC
            error otherwise, counted in *errors*).
    """

    requests_in_flight: int
    answered: int
    input_required: int
    errors: int
    cancelled: int
    refused_states: int
    refused_states_by_reason: Mapping[str, int]
    refused_inputs: int
    timed_out: int


@final
class SessionlessService:
    """Serves 2026-07-28 requests with *server*'s handlers; run it like the manager.

    Args:
        server: The MCP server whose handlers answer.
        request_states: Seals and checks ``requestState`` (share its keys
            between instances behind one endpoint).
        used_states: Remembers spent ``requestState`` tokens (single use).
        write_timeout: Seconds a notification may wait for a stalled reader.
        wall_clock: Seconds since the epoch: a ``requestState`` outlives the
            process and travels between instances, so its age is wall-clock
            time, not trio's (tests pass their own).
        listen_limits: The bounds of ``subscriptions/listen`` streams (held by
            :attr:`listen`).
        client_key: ``fn(RequestInfo) -> str | None``: whose request it is,
            for per-client bounds (the app passes ``CallLimits.rate_limit_key``:
            the peer address, or the principal; never ``clientInfo``).
        request_timeout: Seconds a handler may run without reporting progress.
        max_request_time: Seconds a handler may run at most, progress or not.
    """

    def __init__(
        self,
        server: McpServer,
        *,
        request_states: RequestStateCodec | None = None,
        used_states: UsedStates | None = None,
        write_timeout: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        listen_limits: ListenLimits | None = None,
        client_key: Callable[[RequestInfo], str | None] = _client_address,
        request_timeout: float = REQUEST_TIMEOUT,
        max_request_time: float = MAX_REQUEST_TIME,
    ) -> None:
        check_deadlines(request_timeout, max_request_time)
        self.request_timeout = request_timeout
        self.max_request_time = max_request_time
        self.server = server
        #: The client key of a request (per-client bounds).
        self.client_key = client_key
        #: The open ``subscriptions/listen`` streams (a broadcast's change listener).
        self.listen = ListenHub(listen_limits)
        self._now = wall_clock
        self.request_states = request_states if request_states is not None else RequestStateCodec()
        self.used_states = used_states if used_states is not None else UsedStates()
        self.write_timeout = write_timeout
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._scopes: set[trio.CancelScope] = set()
        self._draining = False
        self._answered = 0
        self._input_required = 0
        self._errors = 0
        self._cancelled = 0
        self._refused_states: Counter[str] = Counter()
        self._refused_inputs = 0
        self._timed_out = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`aclose` or cancelled; then what still runs is cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.listen.run)  # listen streams' lifetimes
            try:
                task_status.started()
                await self._stopped.wait()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Stop: cancel what still runs (after the drain's grace) and end :meth:`run`."""
        self._stopped.set()
        await trio.lowlevel.checkpoint()

    def begin_drain(self) -> None:
        """Start nothing new; what runs gets the grace period; listen streams end now.

        A listen stream never finishes on its own: like a GET stream it ends
        at once, gracefully (its ``SubscriptionsListenResult``), so its
        client listens again elsewhere.
        """
        self._draining = True
        self.listen.close_all()

    def finish_drain(self) -> None:
        """The grace period is over: cancel what still runs."""
        self._draining = True
        self.listen.close_all()
        for scope in list(self._scopes):
            scope.cancel()

    def statistics(self) -> SessionlessStatistics:
        return SessionlessStatistics(
            requests_in_flight=len(self._scopes),
            answered=self._answered,
            input_required=self._input_required,
            errors=self._errors,
            cancelled=self._cancelled,
            refused_states=self._refused_states.total(),
            refused_states_by_reason=dict(self._refused_states),
            refused_inputs=self._refused_inputs,
            timed_out=self._timed_out,
        )

    # -- one request -------------------------------------------------------------------

    def open_request(
        self, request: ModernRequest, info: RequestInfo, *, notifications: bool
    ) -> Exchange:
        """Start *request*'s handler; its notifications and reply arrive on the exchange.

        Args:
            notifications: Whether the response can carry notifications (SSE);
                a JSON reply gets only the answer.

        Raises:
            ServiceUnavailable: Not running, or draining.
        """
        nursery = self._nursery
        if nursery is None or self._draining:
            raise ServiceUnavailable("the server is shutting down", retry_after=5.0)
        scope = trio.CancelScope()
        stream = EventStream("m", on_detach=scope.cancel)
        exchange = Exchange(stream)
        self._scopes.add(scope)
        nursery.start_soon(self._serve, request, info, exchange, scope, notifications)
        return exchange

    def open_listen(
        self, request: ModernRequest, *, client_key: str | None, ends_by: float | None = None
    ) -> EventStream:
        """Open a ``subscriptions/listen`` stream: its acknowledgement is already on it.

        Args:
            client_key: Whose stream it is (:attr:`client_key` of the request),
                for the per-client cap; ``None``: only the global cap applies.
            ends_by: Trio time it ends by at the latest (its access token's expiry).

        Raises:
            ProtocolError: An invalid filter (-32602).
            ServiceUnavailable: Not running, draining, or at a stream cap
                (:attr:`ListenPolicy.REJECT`).
        """
        message = request.message
        assert isinstance(message, Request)
        if self._nursery is None or self._draining:
            raise ServiceUnavailable("the server is shutting down", retry_after=5.0)
        server = self.server
        requested = SubscriptionFilter.parse(
            message.params,
            max_uris=server.max_subscriptions,
            max_uri_length=server.max_uri_length,
            request_id=message.id,
        )
        honoured = requested.honoured(server.capabilities())
        return self.listen.open(
            message.id,
            honoured,
            now=trio.current_time(),
            client_key=client_key,
            server_info=server.server_info(),
            ends_by=ends_by,
        )

    async def _serve(
        self,
        request: ModernRequest,
        info: RequestInfo,
        exchange: Exchange,
        scope: trio.CancelScope,
        notifications: bool,
    ) -> None:
        stream = exchange.stream
        try:
            with scope:
                reply = await self._answer(request, info, stream if notifications else None)
                if isinstance(reply, ErrorResponse):
                    exchange.error_code = reply.code
                    self._errors += 1
                try:
                    data = encode(reply)
                except (TypeError, ValueError):
                    logger.exception("result of %r is not JSON", request.message.method)
                    exchange.error_code = INTERNAL_ERROR
                    data = encode(
                        ErrorResponse(
                            _request_id(request), INTERNAL_ERROR, "Result is not serializable"
                        )
                    )
                if not stream.ended:
                    if not stream.writable:
                        await stream.wait_writable(self.write_timeout)
                    stream.put(SseEvent(None, data))
            if scope.cancelled_caught:
                self._cancelled += 1
        finally:
            self._scopes.discard(scope)
            stream.end()

    async def _answer(
        self, request: ModernRequest, info: RequestInfo, stream: EventStream | None
    ) -> Response | ErrorResponse:
        message = request.message
        assert isinstance(message, Request)
        params = dict(message.params or {})
        answers: dict[str, dict[str, Any]] = {}
        round_ = 0
        origin: float | None = None
        binding: RequestStateBinding | None = None
        if message.method in INPUT_METHODS:  # the only requests with rounds (and a binding)
            binding = RequestStateBinding(
                principal=info.principal,
                method=message.method,
                name=_name_of(message.method, params),
                protocol_version=request.protocol_version,
            )
            try:
                answers, round_, origin = self._gathered(params, binding)
            except ProtocolError as exc:
                return ErrorResponse(message.id, exc.code, exc.message, exc.data)
        peer = StatelessPeer(request, stream, answers, write_timeout=self.write_timeout)
        meta = params.get("_meta")
        ctx = Context(
            peer,
            message.id,
            meta if isinstance(meta, dict) else None,
            default_timeout=self.server.request_timeout,
            request_timeout=self.request_timeout,
            max_request_time=self.max_request_time,
            principal=info.principal,
            token=info.token,
            scope_filter=info.scope_filter,
        )
        try:
            result = await self.server.handle_request(
                Request(message.id, message.method, params), ctx, peer
            )
        except Exception as exc:  # Cancelled is not an Exception: it goes through
            # InputRequired: peer.asked holds every question, including swallowed ones
            # (empty only when handler code raised it itself: then it is an error).
            if not peer.asked:
                answer = failure(exc)
                if answer.log == "traceback":
                    logger.exception("handler for %r failed", message.method)
                return ErrorResponse(message.id, answer.code, answer.message, answer.data)
        else:
            if not peer.asked:
                self._answered += 1
                return Response(message.id, result)
        finally:
            if ctx.timed_out:  # answered all the same, unlike a client's departure
                self._timed_out += 1
        # Only what the handler read rides along: answers it never asked for
        # (a client's extras) are not sealed into the next state.
        assert binding is not None  # only an input method's peer records a question
        return self._ask_for_input(message.id, peer.asked, peer.used, binding, round_ + 1, origin)

    def _gathered(
        self, params: dict[str, Any], binding: RequestStateBinding
    ) -> tuple[dict[str, dict[str, Any]], int, float | None]:
        """The answers the client has given so far, the round they answer, its origin.

        Sizes first: nothing is verified or copied from an echo over its bound.
        """
        responses = params.pop("inputResponses", None)
        token = params.pop("requestState", None)
        codec = self.request_states
        if isinstance(token, str) and len(token) > codec.max_bytes:
            self._refused_states["too_large"] += 1
            raise InvalidRequestState("too_large").to_protocol_error(None)
        if responses is not None and json_size_over(responses, codec.max_input_bytes):
            self._refused_inputs += 1
            raise ProtocolError(
                INVALID_PARAMS,
                f"Invalid params: inputResponses is larger than this server accepts "
                f"(at most {codec.max_input_bytes} characters of JSON)",
                data={"max_input_bytes": codec.max_input_bytes},
            )
        if responses is not None and (
            not isinstance(responses, dict)
            or not all(isinstance(value, dict) for value in responses.values())
        ):
            raise ProtocolError(
                INVALID_PARAMS, "Invalid params: inputResponses must map keys to result objects"
            )
        if token is None:
            return dict(responses or {}), 0, None
        if not isinstance(token, str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: requestState must be a string")
        try:
            opened = self.request_states.open(
                token, binding=binding, now=self._now(), used=self.used_states
            )
        except InvalidRequestState as exc:
            self._refused_states[exc.reason] += 1
            raise exc.to_protocol_error(None) from None
        answers = dict(opened.payload.get("answers", {}))
        asked = set(opened.payload.get("asked", ()))
        for key, value in (responses or {}).items():
            if key in asked:  # anything else the client sent is ignored
                answers[key] = value
        return answers, opened.round, opened.origin

    def _ask_for_input(
        self,
        request_id: Any,
        asked: dict[str, dict[str, Any]],
        answers: dict[str, dict[str, Any]],
        binding: RequestStateBinding,
        round_: int,
        origin: float | None,
    ) -> Response | ErrorResponse:
        try:
            token = self.request_states.seal(
                {"answers": answers, "asked": sorted(asked)},
                binding=binding,
                now=self._now(),
                round=round_,
                origin=origin,
            )
        except (RequestStateTooLarge, TooManyRounds, PendingTooLong) as exc:
            self._errors += 1
            return ErrorResponse(
                request_id, INVALID_PARAMS, f"Invalid params: {exc}", {"reason": exc.reason}
            )
        self._input_required += 1
        return Response(
            request_id,
            {
                "resultType": "input_required",
                "inputRequests": asked,
                "requestState": token,
                "_meta": {META_SERVER_INFO: _server_info(self.server)},
            },
        )


def _name_of(method: str, params: dict[str, Any]) -> str:
    field = _NAME_FIELD.get(method)
    value = params.get(field) if field is not None else None
    return value if isinstance(value, str) else ""


def _request_id(request: ModernRequest) -> Any:
    message = request.message
    return message.id if isinstance(message, Request) else None


def _server_info(server: McpServer) -> dict[str, Any]:
    info: dict[str, Any] = {"name": server.name, "version": server.version}
    if server.title is not None:
        info["title"] = server.title
    return info
