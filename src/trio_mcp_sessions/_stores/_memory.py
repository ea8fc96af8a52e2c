"""The default event store: bounded, in memory, per session and per stream."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

import trio

from .._errors import EventsPurged
from ._base import StoredEvent

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["InMemoryEventStore"]

#: Emptied streams remembered per session (for gap reports) before the oldest go.
_MAX_STREAM_MARKERS = 1000


@dataclass(slots=True)
class _Stream:
    events: deque[tuple[float, StoredEvent]] = field(default_factory=deque)
    #: Highest sequence number dropped by a bound; replay from before it is a gap.
    purged_through: int = 0
    #: When the newest event arrived; an empty stream is forgotten after ``max_age``.
    last_append: float = 0.0


@dataclass(slots=True)
class _SessionEvents:
    streams: dict[str, _Stream] = field(default_factory=dict)
    bytes: int = 0
    count: int = 0


@final
class InMemoryEventStore:
    """Keeps recent SSE events so a broken stream can resume with ``Last-Event-ID``.

    Bounds apply per session, so one busy session cannot push out another's
    events. When a bound drops an event, later replays from before it raise
    :class:`EventsPurged` rather than returning a partial stream.

    Args:
        max_events_per_session: Oldest events beyond this count are dropped.
        max_bytes_per_session: Oldest events beyond this many payload bytes
            are dropped.
        max_age: Events older than this many seconds are dropped (on the next
            append or replay of that session).
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

    def _drop_oldest(self, session: _SessionEvents, stream: _Stream) -> None:
        _, event = stream.events.popleft()
        stream.purged_through = event.seq
        session.bytes -= len(event.data)
        session.count -= 1

    def _expire(self, session: _SessionEvents, now: float) -> None:
        cutoff = now - self.max_age
        for stream in session.streams.values():
            while stream.events and stream.events[0][0] < cutoff:
                self._drop_oldest(session, stream)
        # An emptied stream stays as a small marker (no payload) so a later
        # replay from before its purge is reported as a gap, not as "nothing".
        if len(session.streams) > _MAX_STREAM_MARKERS:
            empty = [sid for sid, st in session.streams.items() if not st.events]
            for stream_id in empty[: len(session.streams) - _MAX_STREAM_MARKERS]:
                del session.streams[stream_id]

    def _oldest_stream(self, session: _SessionEvents) -> _Stream:
        return min((s for s in session.streams.values() if s.events), key=lambda s: s.events[0][0])

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.append_nowait(session_id, stream_id, seq, data)

    def append_nowait(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store an event without yielding (the in-memory store never blocks)."""
        now = trio.current_time()
        session = self._sessions.setdefault(session_id, _SessionEvents())
        stream = session.streams.setdefault(stream_id, _Stream())
        if stream.events and stream.events[-1][1].seq >= seq:
            raise ValueError(f"sequence numbers must grow: {seq} after {stream.events[-1][1].seq}")
        stream.events.append((now, StoredEvent(seq, data)))
        stream.last_append = now
        session.bytes += len(data)
        session.count += 1
        while (
            session.count > self.max_events_per_session
            or session.bytes > self.max_bytes_per_session
        ) and session.count > 1:
            self._drop_oldest(session, self._oldest_stream(session))
        oldest = min((s.events[0][0] for s in session.streams.values() if s.events), default=now)
        if oldest < now - self.max_age:
            self._expire(session, now)

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        await trio.lowlevel.checkpoint()
        session = self._sessions.get(session_id)
        if session is None:
            return ()
        self._expire(session, trio.current_time())
        stream = session.streams.get(stream_id)
        if stream is None:
            return ()
        if after_seq < stream.purged_through:
            raise EventsPurged(
                f"events {after_seq + 1}..{stream.purged_through} of stream {stream_id!r} "
                "are no longer stored"
            )
        return [event for _, event in stream.events if event.seq > after_seq]

    async def delete_session(self, session_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self.delete_session_nowait(session_id)

    def delete_session_nowait(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def statistics(self) -> tuple[int, int, int]:
        """``(sessions, events, bytes)`` currently held."""
        return (
            len(self._sessions),
            sum(s.count for s in self._sessions.values()),
            sum(s.bytes for s in self._sessions.values()),
        )
