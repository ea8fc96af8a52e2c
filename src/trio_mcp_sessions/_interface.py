"""The session-manager interface and its vocabulary: all the transport needs of sessions.

:class:`SessionManager` is rmcp's ``SessionManager`` trait in trio terms; the
transport talks to sessions only through it (and reads their answers from
:class:`~trio_mcp_sessions.EventStream`), so an application can plug in its
own manager with the public API alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from collections.abc import Set as AbstractSet

    from ._auth._types import VerifiedToken
    from ._protocol._jsonrpc import ErrorResponse, Message, Request, Response
    from ._protocol._lifecycle import ClientInfo
    from ._streams import EventStream

__all__ = [
    "CloseReason",
    "ReplyMode",
    "RequestInfo",
    "RestoreOutcome",
    "SessionInfo",
    "SessionManager",
]

#: How a request's answers travel: an SSE stream, or one JSON body.
ReplyMode: TypeAlias = Literal["sse", "json"]


class CloseReason(enum.Enum):
    """Why a session ended; logged, counted and passed to the closed hook."""

    DELETED = "deleted"
    IDLE = "idle"
    INIT_TIMEOUT = "init_timeout"
    MAX_LIFETIME = "max_lifetime"
    EVICTED = "evicted"
    SHUTDOWN = "shutdown"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the transport knows about the HTTP request that carried a message.

    Attributes:
        client_address: ``"host"`` of the peer, or ``None`` when unknown.
        principal: The authenticated identity: the verified token's
            ``(iss, sub, client_id)`` under a resource server, else what the
            application's ``principal`` hook named.
        headers: Lower-cased request headers.
        token: The verified access token (its facts, never the bearer
            string) under a resource server.
        scope_filter: ``fn(scopes) -> bool`` when lists show only what the
            token's scopes allow (``ResourceServer(filter_lists=True)``).
    """

    client_address: str | None = None
    principal: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    token: VerifiedToken | None = None
    scope_filter: Callable[[AbstractSet[str]], bool] | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A read-only view of a live session, for the transport and for users."""

    session_id: str
    protocol_version: str | None
    initialized: bool
    principal: str | None = None


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
            RateLimited: Over a creation rate limit.
            TooManySessions: At the cap with nothing to evict.
            ServiceUnavailable: Not running, or draining.
        """
        ...

    async def initialize_session(
        self, session_id: str, request: Request, client: ClientInfo, info: RequestInfo
    ) -> Response | ErrorResponse:
        """Answer ``initialize``. On an error answer the session is already closed.

        Raises:
            SessionNotFound: The session closed while ``initialize`` ran.
        """
        ...

    def get_session(self, session_id: str) -> SessionInfo | None:
        """The live session, or ``None``."""
        ...

    async def has_session(self, session_id: str) -> bool:
        """Whether *session_id* names a live session (:meth:`get_session` without the view)."""

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
        """Stop admitting sessions and requests; end GET streams with a reconnect hint.

        Requests in flight go on and deliver their answers.
        """
        ...

    def finish_drain(self) -> None:
        """End every response still open with a reconnect hint (the grace period is over)."""
        ...
