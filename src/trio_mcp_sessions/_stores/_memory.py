"""The default event store: bounded, in memory, per session and per stream."""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

import trio

from .._errors import EventsPurged
from ._base import StoredEvent

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["InMemoryEventStore"]

#: Emptied streams remembered per session (for gap reports) before the oldest go.
_MAX_STREAM_MARKERS: Final = 1000
#: Sessions the age sweep looks at, at most, per store call.
_SWEEP_BATCH: Final = 64


@dataclass(slots=True)
class _Stream:
    stream_id: str
    events: deque[StoredEvent] = field(default_factory=deque)
    #: Highest sequence number dropped by a bound; replay from before it is a gap.
    purged_through: int = 0
    #: Highest sequence number appended (stored or not).
    last_seq: int = 0


@dataclass(slots=True)
class _SessionEvents:
    streams: dict[str, _Stream] = field(default_factory=dict)
    #: Every stored event of the session, oldest first: ``(time, stream, event)``.
    #: Events arrive in time order, so the session's oldest event is always at
    #: the front, and it is also the front of its own stream.
    order: deque[tuple[float, _Stream, StoredEvent]] = field(default_factory=deque)
    #: Streams whose events are all gone, kept (payload-free) for gap reports.
    emptied: OrderedDict[str, None] = field(default_factory=OrderedDict)
    bytes: int = 0
    #: Whether the age sweep's heap holds an entry for this session.
    scheduled: bool = False


@final
class InMemoryEventStore:
    """Keeps recent SSE events so a broken stream can resume with ``Last-Event-ID``.

    Bounds apply per session, so one busy session cannot push out another's
    events. When a bound drops an event, later replays from before it raise
    :class:`EventsPurged` rather than returning a partial stream. Every
    operation is O(1) amortized in the number of streams and events.

    Args:
        max_events_per_session: Oldest events beyond this count are dropped.
        max_bytes_per_session: Oldest events beyond this many payload bytes
            are dropped; an event larger than this on its own is not stored
            at all (a gap marker takes its place, so a replay that needs it
            raises :class:`EventsPurged`), so a session never holds more.
        max_age: Events older than this many seconds are dropped: on a
            replay of their session, and by a sweep that every call of the
            store advances (oldest sessions first, a bounded batch per
            call), so an idle session's events do not wait for its next
            append.
    """

    def __init__(
        self,
        *,
        max_events_per_session: int = 1000,
        max_bytes_per_session: int = 1 << 20,
        max_age: float = 300.0,
    ) -> None:
        if max_events_per_session < 1:
            raise ValueError("max_events_per_session must be at least 1")
        if max_bytes_per_session < 1:
            raise ValueError("max_bytes_per_session must be at least 1")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_events_per_session = max_events_per_session
        self.max_bytes_per_session = max_bytes_per_session
        self.max_age = max_age
        self._sessions: dict[str, _SessionEvents] = {}
        #: ``(time of the session's oldest event or earlier, tiebreak, id, session)``:
        #: one entry per session holding events, for the age sweep.
        self._by_age: list[tuple[float, int, str, _SessionEvents]] = []
        self._tiebreak = itertools.count()

    @staticmethod
    def _emptied(session: _SessionEvents, stream: _Stream) -> None:
        session.emptied[stream.stream_id] = None
        while len(session.emptied) > _MAX_STREAM_MARKERS:
            oldest, _ = session.emptied.popitem(last=False)
            session.streams.pop(oldest, None)

    def _drop_oldest(self, session: _SessionEvents) -> None:
        _, stream, event = session.order.popleft()
        stream.events.popleft()
        stream.purged_through = max(stream.purged_through, event.seq)
        session.bytes -= len(event.data)
        if not stream.events:
            self._emptied(session, stream)

    def _schedule(self, session_id: str, session: _SessionEvents) -> None:
        if session.order and not session.scheduled:
            session.scheduled = True
            entry = (session.order[0][0], next(self._tiebreak), session_id, session)
            heapq.heappush(self._by_age, entry)
            if len(self._by_age) > 2 * len(self._sessions) + _SWEEP_BATCH:
                # Mostly deleted sessions' entries: rebuild (amortized O(1)).
                self._by_age = [e for e in self._by_age if self._sessions.get(e[2]) is e[3]]
                heapq.heapify(self._by_age)

    def _sweep(self, now: float) -> None:
        """Expire the sessions whose oldest event is past the age bound (a bounded batch)."""
        cutoff = now - self.max_age
        heap = self._by_age
        for _ in range(_SWEEP_BATCH):
            if not heap or heap[0][0] >= cutoff:
                return
            _, _, session_id, session = heapq.heappop(heap)
            session.scheduled = False
            if self._sessions.get(session_id) is not session:
                continue  # deleted since
            self._expire(session, now)
            self._schedule(session_id, session)

    def _expire(self, session: _SessionEvents, now: float) -> None:
        cutoff = now - self.max_age
        order = session.order
        while order and order[0][0] < cutoff:
            self._drop_oldest(session)

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.append_nowait(session_id, stream_id, seq, data)

    def append_nowait(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store an event without yielding (the in-memory store never blocks)."""
        now = trio.current_time()
        self._sweep(now)
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _SessionEvents()
        stream = session.streams.get(stream_id)
        if stream is None:
            stream = session.streams[stream_id] = _Stream(stream_id)
        if stream.last_seq >= seq:
            raise ValueError(f"sequence numbers must grow: {seq} after {stream.last_seq}")
        stream.last_seq = seq
        if len(data) > self.max_bytes_per_session:
            # Too large to keep within the bound: a gap marker instead, so a
            # replay that would need it fails rather than skipping it.
            stream.purged_through = seq
            if not stream.events:
                self._emptied(session, stream)
            self._expire(session, now)
            return
        session.emptied.pop(stream_id, None)
        event = StoredEvent(seq, data)
        stream.events.append(event)
        session.order.append((now, stream, event))
        session.bytes += len(data)
        while session.order and (
            len(session.order) > self.max_events_per_session
            or session.bytes > self.max_bytes_per_session
        ):
            self._drop_oldest(session)
        self._expire(session, now)
        self._schedule(session_id, session)

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self._sweep(now)
        session = self._sessions.get(session_id)
        if session is None:
            return ()
        self._expire(session, now)
        stream = session.streams.get(stream_id)
        if stream is None:
            return ()
        if after_seq < stream.purged_through:
            raise EventsPurged(
                f"events {after_seq + 1}..{stream.purged_through} of stream {stream_id!r} "
                "are no longer stored"
            )
        return [event for event in stream.events if event.seq > after_seq]

    async def delete_session(self, session_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self.delete_session_nowait(session_id)

    def delete_session_nowait(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            # The sweep's entry may outlive it for a while: let it hold nothing.
            session.order.clear()
            session.streams.clear()
            session.emptied.clear()
        self._sweep(trio.current_time())

    def statistics(self) -> tuple[int, int, int]:
        """``(sessions, events, bytes)`` currently held (after expiring what is too old)."""
        self._sweep(trio.current_time())
        return (
            len(self._sessions),
            sum(len(s.order) for s in self._sessions.values()),
            sum(s.bytes for s in self._sessions.values()),
        )
