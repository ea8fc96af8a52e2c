"""The session clock: when a session ends, and why, from plain numbers.

Sans-IO, like the rest of the protocol core: no trio, no time source. The
session feeds it what happens (with the time it happened) and applies
:meth:`SessionClock.deadline` to its cancel scope; when the scope fires,
:meth:`SessionClock.expiry_reason` names why. One home for the idle rule:

- while a request is in flight or a stream is attached the session is busy,
  and no timeout but the maximum lifetime applies;
- until the client first uses the session after ``initialize`` (sends
  ``initialized``, a request, or opens a stream) the init timeout applies,
  counted from creation, and activity does not extend it;
- after that, the idle timeout applies, counted from the last activity;
- the maximum lifetime caps all of them.
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias, final

__all__ = ["ExpiryReason", "SessionClock"]

#: Why a session's deadline passed (the values of the matching ``CloseReason``).
ExpiryReason: TypeAlias = Literal["idle", "init_timeout", "max_lifetime"]


@final
class SessionClock:
    """The deadlines of one session.

    Args:
        now: When the session was created.
        idle_timeout: Seconds without activity after which it ends.
        init_timeout: Seconds from creation within which it must be used.
        max_lifetime: Seconds after creation at which it ends whatever it
            does (``None``: no limit).
    """

    __slots__ = (
        "created_at",
        "expires_at",
        "idle_timeout",
        "inflight",
        "init_timeout",
        "last_activity",
        "streams",
        "used",
    )

    def __init__(
        self,
        now: float,
        *,
        idle_timeout: float,
        init_timeout: float,
        max_lifetime: float | None = None,
    ) -> None:
        self.created_at = now
        self.last_activity = now
        self.idle_timeout = idle_timeout
        self.init_timeout = init_timeout
        #: The end whatever the activity (``inf`` without a maximum lifetime).
        self.expires_at = now + max_lifetime if max_lifetime is not None else math.inf
        #: Whether the client has used the session since ``initialize``.
        self.used = False
        #: Requests whose handlers are running.
        self.inflight = 0
        #: HTTP responses attached to the session's streams.
        self.streams = 0

    @property
    def busy(self) -> bool:
        """A request is in flight or a stream is attached: no idle or init timeout runs."""
        return self.inflight > 0 or self.streams > 0

    def activity(self, now: float) -> None:
        """The client did something (a message, the end of a request or a stream)."""
        self.last_activity = now

    def use(self, now: float) -> None:
        """The client used the session: from now on the idle timeout applies."""
        self.used = True
        self.last_activity = now

    def deadline(self) -> float:
        """When the session ends if nothing else happens (``inf``: not while busy)."""
        if self.inflight > 0 or self.streams > 0:
            deadline = math.inf
        elif not self.used:
            deadline = self.created_at + self.init_timeout
        else:
            deadline = self.last_activity + self.idle_timeout
        return deadline if deadline < self.expires_at else self.expires_at

    def expiry_reason(self, now: float) -> ExpiryReason:
        """Why a deadline that has passed at *now* ended the session."""
        if now >= self.expires_at:
            return "max_lifetime"
        return "idle" if self.used else "init_timeout"
