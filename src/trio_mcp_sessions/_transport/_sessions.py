"""The session-era requests (up to 2025-11-25): POST after the era split, GET, DELETE.

The sessionful half of the endpoint, beside :mod:`._modern`. Everything here
reaches sessions only through the :class:`SessionManager` it is given: the
one lookup of a request (:func:`require_session`, restoring from the store
if need be), ``initialize`` minting ``Mcp-Session-Id``, the GET stream and
its resumption from ``Last-Event-ID``, DELETE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import trio

from .._errors import (
    EventsPurged,
    ServiceUnavailable,
    SessionNotFound,
    StoreUnavailable,
    UnknownEventId,
)
from .._interface import CloseReason, RestoreOutcome
from .._protocol._jsonrpc import (
    INVALID_REQUEST,
    SERVER_ERROR,
    ErrorResponse,
    ProtocolError,
    Request,
    encode,
)
from .._protocol._lifecycle import (
    SUPPORTED_PROTOCOL_VERSIONS,
    parse_initialize,
    supports_batches,
)
from ._answers import (
    SESSION_HEADER,
    _answer_for,
    _from_protocol_error,
    _HTTPError,
    _session_header,
    _session_not_found,
    _unsupported_version,
)
from ._http import accepts
from ._replies import _JSON, _reply_json, _send_simple

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._interface import ReplyMode, RequestInfo, SessionInfo, SessionManager
    from .._protocol._jsonrpc import InputLimits, Message
    from .._streams import EventStream
    from ._replies import Receive, Send

__all__ = [
    "VERSION_HEADER",
    "SseReply",
    "check_version_header",
    "delete_session",
    "get_stream",
    "post_session",
    "require_session",
]

VERSION_HEADER: Final = "mcp-protocol-version"

#: An SSE answer to write: the stream and the extra response headers.
SseReply: TypeAlias = "tuple[EventStream, list[tuple[bytes, bytes]]]"


def check_version_header(
    headers: dict[str, str], request_id: str | int | None = None
) -> str | None:
    """The ``Mcp-Protocol-Version`` header, which may be absent but not unknown."""
    version = headers.get(VERSION_HEADER)
    if version is not None and version not in SUPPORTED_PROTOCOL_VERSIONS:
        raise _unsupported_version(version, request_id)
    return version


async def require_session(
    manager: SessionManager,
    session_id: str,
    info: RequestInfo,
    request_id: str | int | None = None,
) -> SessionInfo:
    """The caller's live session, restored from the store if need be; else 404.

    The one lookup of a request: what it returns is the session's state
    when the caller next runs (no checkpoint in between).
    """
    live = manager.get_session(session_id)
    if live is None:
        outcome = RestoreOutcome.NOT_FOUND
        if _plausible_session_id(session_id):
            try:
                outcome = await manager.restore_session(session_id, info)
            except (ServiceUnavailable, StoreUnavailable) as exc:  # limits, draining, store
                raise _answer_for(exc, request_id) from None
        if outcome not in (RestoreOutcome.RESTORED, RestoreOutcome.ALREADY_PRESENT):
            raise _session_not_found(request_id)
        live = manager.get_session(session_id)
    if live is None or live.principal != info.principal:
        # A session is bound to the credential that created it; anyone
        # else is told exactly what an unknown id gets.
        raise _session_not_found(request_id)
    return live


# -- POST ----------------------------------------------------------------------------


async def post_session(
    manager: SessionManager,
    reply_mode: ReplyMode,
    input_limits: InputLimits,
    receive: Receive,
    send: Send,
    headers: dict[str, str],
    info: RequestInfo,
    messages: Sequence[Message],
    is_batch: bool,
) -> SseReply | None:
    """Answer one session-era POST body (already parsed and size-checked).

    A JSON answer is written on *send*; an SSE answer comes back to be
    written by the caller.

    Raises:
        _HTTPError: The answer when the request is refused.
    """
    # Echo the request's id in error answers when there is exactly one.
    only_id = messages[0].id if not is_batch and isinstance(messages[0], Request) else None
    check_version_header(headers, only_id)
    initialize = [m for m in messages if isinstance(m, Request) and m.method == "initialize"]
    if initialize:
        if is_batch:
            raise _HTTPError(
                400, INVALID_REQUEST, "Invalid Request: initialize cannot be part of a batch"
            )
        if SESSION_HEADER in headers:
            raise _HTTPError(
                400,
                INVALID_REQUEST,
                "Invalid Request: initialize must not carry Mcp-Session-Id",
                request_id=initialize[0].id,
            )
        await _initialize(manager, input_limits, send, initialize[0], info)
        return None
    session_id = headers.get(SESSION_HEADER)
    if session_id is None:
        first = messages[0]
        raise _HTTPError(
            400,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
            request_id=first.id if isinstance(first, Request) else None,
        )
    session = await require_session(manager, session_id, info, only_id)
    if is_batch and not supports_batches(session.protocol_version or ""):
        raise _HTTPError(
            400,
            INVALID_REQUEST,
            f"Invalid Request: batches are not allowed in protocol {session.protocol_version}",
        )
    requests = [m for m in messages if isinstance(m, Request)]
    others = [m for m in messages if not isinstance(m, Request)]
    try:
        if others:
            await manager.accept_messages(session_id, others, info)
        if not requests:
            await _send_simple(send, 202, b"", [])
            return None
        stream = await manager.create_stream(session_id, requests, info, reply_mode)
    except (SessionNotFound, ServiceUnavailable, ProtocolError) as exc:
        # ServiceUnavailable: the in-flight cap (429), draining (503).
        raise _answer_for(exc, only_id) from None
    session_header = _session_header(session_id)
    if reply_mode == "json":
        await _reply_json(receive, send, stream, len(requests), is_batch, session_header)
        return None
    return stream, [session_header]


async def _initialize(
    manager: SessionManager,
    input_limits: InputLimits,
    send: Send,
    request: Request,
    info: RequestInfo,
) -> None:
    try:
        client = parse_initialize(request, input_limits)
    except ProtocolError as exc:
        raise _from_protocol_error(exc, status=400, request_id=request.id) from None
    try:
        session_id = await manager.create_session(info)
    except ServiceUnavailable as exc:  # TooManySessions, RateLimited, draining
        raise _answer_for(exc, request.id) from None
    try:
        reply = await manager.initialize_session(session_id, request, client, info)
    except SessionNotFound:
        raise _HTTPError(
            503, SERVER_ERROR, "Session closed during initialize", request_id=request.id
        ) from None
    if isinstance(reply, ErrorResponse):
        await _send_simple(send, 200, encode(reply), [_JSON])
        return
    await _send_simple(send, 200, encode(reply), [_JSON, _session_header(session_id)])


# -- GET and DELETE ------------------------------------------------------------------


async def get_stream(
    manager: SessionManager, headers: dict[str, str], info: RequestInfo
) -> SseReply:
    """The session's GET stream, or its resumption after ``Last-Event-ID``."""
    if not accepts(headers.get("accept"), "text/event-stream"):
        raise _HTTPError(406, SERVER_ERROR, "Not Acceptable: client must accept text/event-stream")
    check_version_header(headers)
    session_id = _session_id(headers)
    await require_session(manager, session_id, info)
    last_event_id = headers.get("last-event-id")
    try:
        if last_event_id:
            stream: EventStream | None = await manager.resume(session_id, last_event_id)
        else:
            stream = await manager.create_standalone_stream(session_id)
    except (
        SessionNotFound,
        UnknownEventId,
        EventsPurged,
        StoreUnavailable,
        trio.TooSlowError,
        ServiceUnavailable,  # draining
    ) as exc:
        raise _answer_for(exc, unreachable="the event store is unreachable") from None
    if stream is None:
        raise _HTTPError(409, SERVER_ERROR, "Conflict: this session already has an open GET stream")
    return stream, [_session_header(session_id)]


async def delete_session(
    manager: SessionManager, send: Send, headers: dict[str, str], info: RequestInfo
) -> None:
    """Close the caller's session (``DELETE``); 200 once it is closed."""
    check_version_header(headers)
    session_id = _session_id(headers)
    await require_session(manager, session_id, info)
    try:
        await manager.close_session(session_id, CloseReason.DELETED)
    except (SessionNotFound, ServiceUnavailable, StoreUnavailable) as exc:
        # Not deleted on StoreUnavailable (its record would let a restart
        # restore it): the session stays as it was, and the client retries.
        raise _answer_for(
            exc, unreachable="the session store is unreachable; the session was not deleted"
        ) from None
    await _send_simple(send, 200, b"", [])


def _session_id(headers: dict[str, str]) -> str:
    session_id = headers.get(SESSION_HEADER)
    if session_id is None:
        raise _HTTPError(400, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
    return session_id


def _plausible_session_id(session_id: str) -> bool:
    return 0 < len(session_id) <= 256 and all(0x21 <= ord(c) <= 0x7E for c in session_id)
