"""A request's deadline: a time limit that progress may push on, but never past a maximum.

MCP asks for timeouts "to prevent hung connections and resource exhaustion",
and lets progress reset them, provided there is always a maximum that
progress cannot extend (``basic/patterns/cancellation.mdx#timeouts``). Each
request's runner (a session's handler task, or the sessionless service)
gives its ``Context`` a :class:`RequestDeadline`; ``McpServer.handle_request``
runs the handler in a cancel scope with that deadline, and each
``report_progress`` pushes it on. Plain arithmetic: no trio here.
"""

from __future__ import annotations

import math
from typing import Final, final

__all__ = [
    "MAX_REQUEST_TIME",
    "REQUEST_TIMED_OUT",
    "REQUEST_TIMEOUT",
    "RequestDeadline",
    "check_deadlines",
]

#: Seconds a handler may run without reporting progress (the default).
REQUEST_TIMEOUT: Final = 60.0
#: Seconds a handler may run at most, however often it reports progress (the default).
MAX_REQUEST_TIME: Final = 600.0
#: The JSON-RPC code of a request (other than ``tools/call``) cut by its deadline.
#: The spec assigns no code to a timeout, asks that new codes stay outside
#: -32768..-32000, and that new implementations not use the legacy
#: -32000..-32019 (where -32001 is already our "Session not found"): so the
#: standard "Internal error", its ``data.timeout`` saying why.
REQUEST_TIMED_OUT: Final = -32603


def check_deadlines(request_timeout: object, max_request_time: object) -> None:
    """Refuse what is not a positive number of seconds, or a maximum below the timeout."""
    for name, value in (
        ("request_timeout", request_timeout),
        ("max_request_time", max_request_time),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds, not {value!r}")
        if not value > 0 or math.isnan(value):
            raise ValueError(f"{name} must be positive, got {value}")
    assert isinstance(request_timeout, (int, float))
    assert isinstance(max_request_time, (int, float))
    if max_request_time < request_timeout:
        raise ValueError(
            f"max_request_time ({max_request_time:g} s) must be at least "
            f"request_timeout ({request_timeout:g} s): progress can only extend a deadline"
        )


@final
class RequestDeadline:
    """When one handler is cut: *request_timeout* after its start or its last progress,
    and *max_request_time* after its start at the latest.

    Attributes:
        started_at: When the handler started (trio time).
        request_timeout: Seconds it may run without progress (``inf``: no limit).
        max_request_time: Seconds it may run at most (``inf``: no maximum).
        deadline: The deadline in force.
        expired: Set by whoever enforces it: the deadline cut the handler.
    """

    __slots__ = ("deadline", "expired", "max_request_time", "request_timeout", "started_at")

    def __init__(
        self, started_at: float, *, request_timeout: float, max_request_time: float
    ) -> None:
        self.started_at = started_at
        self.request_timeout = request_timeout
        self.max_request_time = max_request_time
        self.deadline = min(started_at + request_timeout, self.hard_deadline)
        self.expired = False

    @property
    def hard_deadline(self) -> float:
        """The latest the handler may run until, whatever it reports."""
        return self.started_at + self.max_request_time

    def progress(self, now: float) -> float:
        """The handler showed it is alive at *now*: the deadline moves on (never back,
        never past :attr:`hard_deadline`); returns it."""
        self.deadline = min(max(self.deadline, now + self.request_timeout), self.hard_deadline)
        return self.deadline

    def waiting(self, now: float, seconds: float) -> float:
        """The handler waits up to *seconds* from *now* for the client (a question in a
        session): not cut before its own wait is over, never past :attr:`hard_deadline`;
        returns the deadline."""
        self.deadline = min(max(self.deadline, now + seconds), self.hard_deadline)
        return self.deadline

    @property
    def ran_for(self) -> float:
        """Seconds from the start to the deadline in force (how long an expired handler ran)."""
        return self.deadline - self.started_at
