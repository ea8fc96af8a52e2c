"""Errors of the session layer, named for the condition (trio style).

Each carries what the HTTP transport needs to answer clearly; the session
manager itself knows nothing of HTTP, so these are hints, not responses.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "EventsPurged",
    "RateLimited",
    "ServerBusy",
    "ServiceUnavailable",
    "SessionError",
    "SessionNotFound",
    "StoreUnavailable",
    "TooManyInFlight",
    "TooManySessions",
    "UnknownEventId",
]


class SessionError(Exception):
    """Base class of every error the session layer raises on purpose."""


class SessionNotFound(SessionError):
    """No live session has this id: unknown, expired, evicted or deleted.

    The transport answers 404, after which a client must re-``initialize``.
    """


class ServiceUnavailable(SessionError):
    """The manager cannot admit work now (not started, or draining for shutdown).

    Attributes:
        retry_after: Seconds after which a retry may succeed.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManySessions(ServiceUnavailable):
    """The session cap is reached and nothing could be evicted (HTTP 503)."""


class ServerBusy(ServiceUnavailable):
    """The server runs as many requests as its global in-flight cap allows (HTTP 503).

    The request was refused before its body was read; retry after ``retry_after``.
    """


class RateLimited(ServiceUnavailable):
    """Over a rate limit (sessions created too fast) or a concurrency limit (HTTP 429).

    Attributes:
        retry_after: Seconds until a retry may be admitted.
    """


class BudgetExceeded(RateLimited):
    """A 2026-07-28 request over one of its :class:`CallLimits` budgets (HTTP 429).

    Plain strings, for the answer's ``error.data``; nothing about other clients.

    Attributes:
        budget: ``"calls"``, ``"method"``, ``"tool"`` or ``"discover"``.
        scope: ``"global"`` (all clients together) or ``"per_client"``.
        name: The method or tool name (``""`` for ``calls`` and ``discover``).
    """

    def __init__(
        self, message: str, *, budget: str, scope: str, name: str = "", retry_after: float
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.budget = budget
        self.scope = scope
        self.name = name


class TooManyInFlight(RateLimited):
    """A session or a client already runs as many requests as its in-flight cap allows (HTTP 429).

    Nothing of the refused request (or batch) was started; retry once some
    requests are answered.
    """


class UnknownEventId(SessionError):
    """A ``Last-Event-ID`` that names no stream of this session."""


class EventsPurged(SessionError):
    """Events after a ``Last-Event-ID`` were already dropped by the event store's bounds.

    Replaying what is left would silently lose messages, so resumption fails
    instead (the transport answers with a distinct error).
    """


class StoreUnavailable(SessionError):
    """A store backend failed or timed out; the original error is ``__cause__``."""
