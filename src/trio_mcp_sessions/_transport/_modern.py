"""A 2026-07-28 POST: the ladder, the header checks that need the server, the answer.

The sessionless half of the endpoint. A request here never reads, mints or
echoes ``Mcp-Session-Id`` and ignores ``Last-Event-ID``; its handler runs in
the sessionless service (:mod:`._stateless`), and its answer is JSON unless
the handler says something before it finishes (then SSE).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from .._errors import BudgetExceeded, ServiceUnavailable
from .._protocol._era import (
    MODERN_VERSIONS,
    RoutingHeaders,
    check_modern,
    check_param_headers,
    http_status_for,
)
from .._protocol._jsonrpc import SERVER_ERROR, Notification, ProtocolError, Request
from .._protocol._subscriptions import LISTEN
from ._answers import _answer_for, _from_protocol_error, _HTTPError
from ._auth import token_deadline
from ._http import accepts
from ._replies import _reply_modern, _send_simple

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._interface import RequestInfo
    from .._manager._budgets import CallAdmission
    from .._protocol._jsonrpc import Message
    from .._server._server import McpServer
    from .._stateless import SessionlessService
    from ._replies import Receive, Scope, Send

__all__ = ["post_modern"]

#: What a log level may be in a request's ``_meta`` (RFC 5424, as MCP's LoggingLevel).
_LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


async def post_modern(
    service: SessionlessService,
    server: McpServer,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[str, str],
    info: RequestInfo,
    messages: Sequence[Message],
    calls: CallAdmission | None = None,
) -> None:
    """Answer one modern POST body (already parsed) on *send*.

    *calls* holds the budgets of :class:`CallLimits` (the call budget, per
    method, per tool; ``server/discover``'s own); over one the answer is 429
    with ``Retry-After`` and a JSON-RPC error naming the budget.

    The reply is JSON unless the handler sends a notification first and the
    client accepts SSE, whatever the session era's ``reply_mode``: with no
    GET stream at 2026-07-28, a JSON-only reply would lose progress and logs.

    Raises:
        _HTTPError: An answer before any handler ran (the ladder, 405/406...).
    """
    if len(messages) == 1 and isinstance(messages[0], Notification):
        # This revision defines no client notifications over HTTP: accept, drop.
        await _send_simple(send, 202, b"", [])
        return
    first = messages[0] if len(messages) == 1 else None
    listen = isinstance(first, Request) and first.method == LISTEN
    if listen and not accepts(headers.get("accept"), "text/event-stream"):
        # Its answer is a stream, in either reply mode (as the SDKs do).
        raise _HTTPError(
            406,
            SERVER_ERROR,
            "Not Acceptable: subscriptions/listen answers with an event stream; "
            "the client must accept text/event-stream",
            request_id=first.id if isinstance(first, Request) else None,
        )
    routing = RoutingHeaders.from_asgi(scope.get("headers", ()))
    tool: str | None = None
    try:
        modern = check_modern(messages, routing, supported=MODERN_VERSIONS, log_levels=_LOG_LEVELS)
        request = modern.message
        if isinstance(request, Request) and request.method == "tools/call":
            params = request.params or {}
            name, arguments = params.get("name"), params.get("arguments")
            if isinstance(name, str):
                tool = name
                annotations = server.param_headers(name)
                if annotations:
                    check_param_headers(
                        annotations,
                        arguments if isinstance(arguments, dict) else {},
                        routing,
                        request.id,
                    )
    except ProtocolError as exc:
        raise _from_protocol_error(exc) from None
    request_id = request.id if isinstance(request, Request) else None
    if calls is not None:
        # The budgets, after the headers were checked against the body (so the
        # tool name and a key built from them can be trusted). server/discover
        # spends only from its own: a probe refused by the call budget would
        # send a dual-era client back to the handshake for good.
        try:
            try:
                calls.admit_nowait(info, request.method, tool)
            except trio.WouldBlock:  # shared budgets: ask the shared limiter
                await calls.admit(info, request.method, tool)
        except BudgetExceeded as exc:  # 429 + Retry-After, naming the budget
            raise _budget_refusal(exc, request_id) from None
    if listen:
        try:
            stream = service.open_listen(
                modern, client_key=service.client_key(info), ends_by=token_deadline(info.token)
            )
        except ServiceUnavailable as exc:  # the cap, draining
            raise _answer_for(exc, request_id) from None
        except ProtocolError as exc:  # the filter
            raise _from_protocol_error(exc) from None
        await _reply_modern(receive, send, stream, lambda: 200, sse=True)
        return
    sse = accepts(headers.get("accept"), "text/event-stream")
    try:
        exchange = service.open_request(modern, info, notifications=sse)
    except ServiceUnavailable as exc:
        raise _answer_for(exc, request_id) from None

    def status() -> int:
        code = exchange.error_code
        return 200 if code is None else http_status_for(code)

    await _reply_modern(receive, send, exchange.stream, status, sse=sse)


def _budget_refusal(exc: BudgetExceeded, request_id: str | int | None) -> _HTTPError:
    """The 429 naming the budget (built here: a local holding the error it raises would be a
    reference cycle, frame to traceback, and a flood of refusals a flood of garbage)."""
    refusal = _answer_for(exc, request_id)
    refusal.data = {"budget": exc.budget, "scope": exc.scope}
    if exc.name:
        refusal.data["name"] = exc.name
    refusal.data["retryAfter"] = math.ceil(exc.retry_after)
    return refusal


def method_not_allowed() -> _HTTPError:
    """GET and DELETE do not exist at 2026-07-28 (no GET stream, no session to delete)."""
    return _HTTPError(
        405,
        -32000,
        "Method Not Allowed: a 2026-07-28 endpoint takes POST only",
        headers=[(b"allow", b"POST")],
    )
