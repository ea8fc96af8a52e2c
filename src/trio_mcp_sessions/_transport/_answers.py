"""The HTTP answer to every error: status, headers and JSON-RPC error body, built once.

Validation raises :class:`_HTTPError`; what the session manager and the
protocol core raise is mapped to one by :func:`_answer_for`, the only place
that knows which error gets which status.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, TypeAlias, assert_never

import trio

from .._errors import (
    EventsPurged,
    RateLimited,
    ServiceUnavailable,
    SessionNotFound,
    StoreUnavailable,
    UnknownEventId,
)
from .._protocol._era import ADVERTISED_VERSIONS
from .._protocol._jsonrpc import (
    INVALID_REQUEST,
    SERVER_ERROR,
    SESSION_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorResponse,
    ProtocolError,
    encode,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

SESSION_HEADER: Final = "mcp-session-id"
_SESSION_HEADER_NAME: Final = SESSION_HEADER.encode("ascii")

#: ``Retry-After`` for a store that does not answer (its breaker probes again soon).
_STORE_RETRY_AFTER: Final = 2.0

#: What :func:`_answer_for` maps: the manager's errors, the protocol core's,
#: and a store call that outlasted its deadline.
_MappedError: TypeAlias = (
    SessionNotFound
    | ServiceUnavailable
    | StoreUnavailable
    | trio.TooSlowError
    | ProtocolError
    | UnknownEventId
    | EventsPurged
)


class _HTTPError(Exception):
    """An HTTP answer with a JSON-RPC error body, raised during validation."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        request_id: str | int | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        data: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        #: The ``Retry-After`` seconds of a 429 or 503 (also in *headers*).
        self.retry_after = retry_after
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.headers = list(headers)
        self.data = data

    def body(self) -> bytes:
        return encode(ErrorResponse(self.request_id, self.code, self.message, self.data))


def _session_header(session_id: str) -> tuple[bytes, bytes]:
    """The ``Mcp-Session-Id`` response header (ids are printable ASCII)."""
    return (_SESSION_HEADER_NAME, session_id.encode("ascii"))


def _session_not_found(request_id: str | int | None = None) -> _HTTPError:
    """404: an unknown, closed or foreign session all get exactly this."""
    return _HTTPError(404, SESSION_NOT_FOUND, "Session not found", request_id=request_id)


def _from_protocol_error(
    exc: ProtocolError, *, status: int | None = None, request_id: str | int | None = None
) -> _HTTPError:
    """The error's own status and id unless the caller knows better."""
    return _HTTPError(
        status or exc.http_status,
        exc.code,
        exc.message,
        request_id=request_id if request_id is not None else exc.request_id,
        data=exc.data,
    )


def _too_large(limit: int) -> _HTTPError:
    """413: a body over *limit* bytes, declared or sent."""
    return _HTTPError(413, INVALID_REQUEST, f"Payload Too Large: limit is {limit} bytes")


def _unsupported_version(version: str, request_id: str | int | None = None) -> _HTTPError:
    """400 naming the versions we speak (the client's value is cut: it is echoed twice)."""
    shown = version[:64]  # never a client's whole header back
    return _HTTPError(
        400,
        UNSUPPORTED_PROTOCOL_VERSION,
        f"Bad Request: unsupported protocol version {shown!r} "
        f"(supported: {', '.join(ADVERTISED_VERSIONS)})",
        data={"supported": list(ADVERTISED_VERSIONS), "requested": shown},
        request_id=request_id,
    )


def _unavailable(exc: ServiceUnavailable, request_id: str | int | None = None) -> _HTTPError:
    """503 (or 429 for a rate limit) with ``Retry-After`` and a JSON-RPC error body."""
    seconds = max(1, math.ceil(exc.retry_after))
    retry = str(seconds).encode("ascii")
    if isinstance(exc, RateLimited):
        status, prefix = 429, "Too Many Requests"
    else:
        status, prefix = 503, "Service Unavailable"
    return _HTTPError(
        status,
        SERVER_ERROR,
        f"{prefix}: {exc}",
        request_id=request_id,
        headers=[(b"retry-after", retry)],
        retry_after=seconds,
    )


def _answer_for(
    exc: _MappedError,
    request_id: str | int | None = None,
    *,
    unreachable: str = "the session store is unreachable",
) -> _HTTPError:
    """The one mapping of an error to an HTTP answer.

    *request_id* is echoed where the error has none of its own; *unreachable*
    says which store a :class:`StoreUnavailable` (or a store call's timeout)
    is about, and what did not happen because of it.
    """
    if isinstance(exc, SessionNotFound):
        return _session_not_found(request_id)
    if isinstance(exc, ServiceUnavailable):  # caps, rate limits, draining
        return _unavailable(exc, request_id)
    if isinstance(exc, StoreUnavailable | trio.TooSlowError):
        return _unavailable(
            ServiceUnavailable(unreachable, retry_after=_STORE_RETRY_AFTER), request_id
        )
    if isinstance(exc, ProtocolError):
        return _from_protocol_error(exc)
    if isinstance(exc, UnknownEventId):
        return _HTTPError(400, INVALID_REQUEST, f"Bad Request: cannot resume: {exc}")
    if isinstance(exc, EventsPurged):
        return _HTTPError(409, SERVER_ERROR, f"Conflict: cannot resume, events were lost: {exc}")
    assert_never(exc)
