"""The live-session table: who holds a slot, who is idle, and who makes room.

One owner for the per-session facts the cap depends on: the live sessions
in creation order, the idle LRU, the busy set and the
:class:`trio.CapacityLimiter` whose borrowers are the live session ids. The
victim choice is a plain synchronous function of those (as httpcore's pool
assignment is), testable with stand-ins and no session running.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import trio

from .._errors import SessionNotFound, TooManySessions
from .._interface import CloseReason
from ._limits import EvictionPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Candidate", "SessionTable", "choose_victim"]


class Candidate(Protocol):
    """What the victim choice reads of a session."""

    @property
    def is_open(self) -> bool: ...
    @property
    def busy(self) -> bool: ...
    @property
    def client_info(self) -> object | None: ...


class Evictable(Candidate, Protocol):
    """A candidate the table can close to make room."""

    def close(self, reason: CloseReason) -> None: ...


C = TypeVar("C", bound=Candidate)


def choose_victim(
    policy: EvictionPolicy, sessions: Mapping[str, C], idle: OrderedDict[str, None]
) -> C | None:
    """The session *policy* names to make room, or ``None`` to refuse.

    ``LEAST_RECENTLY_ACTIVE`` pops *idle* (least recent first) until it finds
    an open session that is not busy: entries that lag behind a session's
    state are dropped on the way, so the cost is O(1) amortized. ``OLDEST``
    takes the first open, initialized session in creation order (*sessions*
    keeps insertion order); ``REJECT`` never evicts.
    """
    if policy is EvictionPolicy.REJECT:
        return None
    if policy is EvictionPolicy.LEAST_RECENTLY_ACTIVE:
        while idle:
            session_id, _ = idle.popitem(last=False)
            session = sessions.get(session_id)
            if session is not None and session.is_open and not session.busy:
                return session
        return None
    # OLDEST: creation order; skip sessions already on their way out.
    for session in sessions.values():
        if session.is_open and session.client_info is not None:
            return session
    return None


S = TypeVar("S", bound=Evictable)


class SessionTable(Generic[S]):
    """Live sessions under an exact cap: one limiter token per session id."""

    __slots__ = ("busy", "idle", "limiter", "refused", "sessions")

    def __init__(self, max_sessions: int) -> None:
        self.limiter = trio.CapacityLimiter(max_sessions)
        #: Live sessions in creation order (the ``oldest`` policy's queue).
        self.sessions: dict[str, S] = {}
        #: Sessions with nothing in flight, least recently active first.
        self.idle: OrderedDict[str, None] = OrderedDict()
        self.busy: set[str] = set()
        #: Creations refused at the cap.
        self.refused = 0

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session_id: str) -> S | None:
        return self.sessions.get(session_id)

    def live(self, session_id: str) -> S:
        """The open session *session_id* (raises :class:`SessionNotFound`)."""
        session = self.sessions.get(session_id)
        if session is None or not session.is_open:
            raise SessionNotFound(session_id)
        return session

    def take_nowait(self, session_id: str) -> bool:
        """Take a free slot for *session_id*; ``False`` at the cap."""
        try:
            self.limiter.acquire_on_behalf_of_nowait(session_id)
        except trio.WouldBlock:
            return False
        return True

    async def take_slot(self, session_id: str, policy: EvictionPolicy, wait: float) -> None:
        """Take a slot for *session_id*, evicting per *policy* at the cap.

        Raises:
            TooManySessions: No victim, or the victim did not finish closing
                within *wait* seconds.
        """
        if self.take_nowait(session_id):
            return
        victim = self.victim(policy)
        if victim is None:
            self.refused += 1
            raise TooManySessions(
                f"session limit ({self.limiter.total_tokens}) reached and no session is idle",
                retry_after=5.0,
            )
        victim.close(CloseReason.EVICTED)
        # The victim releases its token when its worker has finished; trio's
        # limiter hands a released token straight to the first waiter, so no
        # other creation can slip in between: the cap holds exactly.
        with trio.move_on_after(wait):
            await self.limiter.acquire_on_behalf_of(session_id)
            return
        self.refused += 1
        raise TooManySessions("timed out waiting for an evicted session to close", retry_after=5.0)

    def add(self, session_id: str, session: S) -> None:
        """Enter a session holding its slot; busy (initializing) until it reports otherwise."""
        self.sessions[session_id] = session
        self.busy.add(session_id)

    def mark(self, session_id: str, busy: bool) -> None:
        """Keep the idle LRU and the busy set in step with a session: O(1) per change."""
        if busy:
            self.idle.pop(session_id, None)
            self.busy.add(session_id)
        else:
            self.busy.discard(session_id)
            self.idle[session_id] = None
            self.idle.move_to_end(session_id)

    def remove(self, session_id: str, session: S) -> None:
        """Forget *session* everywhere and give its slot back: the one way out."""
        if self.sessions.get(session_id) is session:
            del self.sessions[session_id]
        self.idle.pop(session_id, None)
        self.busy.discard(session_id)
        self.limiter.release_on_behalf_of(session_id)

    def victim(self, policy: EvictionPolicy) -> S | None:
        return choose_victim(policy, self.sessions, self.idle)
