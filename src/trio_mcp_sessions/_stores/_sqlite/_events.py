"""The SQLite event store: recent SSE events per stream, bounded per session."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, final

from ..._errors import EventsPurged
from .._base import StoredEvent
from ._database import BUSY_TIMEOUT, _Database, _SqliteStore, _transaction

if TYPE_CHECKING:
    import os
    import sqlite3
    from collections.abc import Callable, Sequence

__all__ = ["SqliteEventStore"]


@final
class SqliteEventStore(_SqliteStore):
    """Keeps recent SSE events in a SQLite file, so streams resume even after a restart.

    Behaves like :class:`~trio_mcp_sessions.InMemoryEventStore`, with these
    bounds, applied per session so one busy session cannot push out
    another's events:

    * **count** and **bytes**: after each append, the session's oldest events
      (in insertion order, whichever stream they belong to) are dropped until
      the session holds at most *max_events_per_session* events and
      *max_bytes_per_session* payload bytes. An event larger than the byte
      bound on its own is not stored: it becomes a gap (a replay that needs it
      raises :class:`~trio_mcp_sessions.EventsPurged`), so the bound holds.
    * **age**: events older than *max_age* seconds by *clock* are dropped
      lazily, on the next :meth:`append` or :meth:`replay_after` (of any
      session: the sweep covers the whole file, so events of sessions that
      were never deleted, say after a crash, do not stay forever). Stores
      with different *max_age* sharing one file all apply the shortest.

    A dropped event is never replayed silently around: each stream remembers
    the highest sequence number dropped from it, and a replay from before that
    raises :class:`~trio_mcp_sessions.EventsPurged`. That record (a few bytes
    per stream, no payload) stays until :meth:`delete_session`, so unlike the
    in-memory store a stream whose events all aged out still reports the gap
    instead of looking unknown.

    Args:
        path: The database file (created if missing; ``":memory:"`` works but
            survives nothing). It may be shared with a
            :class:`SqliteSessionStore`.
        max_events_per_session: Events kept per session at most.
        max_bytes_per_session: Payload bytes kept per session at most.
        max_age: Seconds an event is kept at most.
        clock: Seconds now; the default wall clock stays meaningful across
            restarts. Called in the trio thread, so :func:`trio.current_time`
            works (tests use it with ``autojump_clock``).
        busy_timeout: Seconds a call waits for another connection's lock at
            most; a caller's deadline (the manager's ``store_timeout``)
            shortens it.

    Raises:
        ValueError: For a bound that is not positive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events_per_session: int = 1000,
        max_bytes_per_session: int = 1 << 20,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        if max_events_per_session < 1:
            raise ValueError("max_events_per_session must be at least 1")
        if max_bytes_per_session < 1:
            raise ValueError("max_bytes_per_session must be at least 1")
        if not max_age > 0:
            raise ValueError("max_age must be positive")
        self.path = path
        self.max_events_per_session = max_events_per_session
        self.max_bytes_per_session = max_bytes_per_session
        self.max_age = max_age
        self._clock = clock
        self._db = _Database(path, busy_timeout=busy_timeout)

    # -- worker-thread helpers (each runs inside one transaction) -------------------

    def _expire(self, conn: sqlite3.Connection, cutoff: float) -> None:
        """Drop every event created before *cutoff*, remembering the gaps."""
        # Plain rows, aggregated here: a GROUP BY would lead SQLite to scan the
        # whole table in stream order instead of seeking the age index.
        streams: dict[tuple[str, str], int] = {}
        sessions: dict[str, tuple[int, int]] = {}
        for session_id, stream_id, seq, size in conn.execute(
            "SELECT session_id, stream_id, seq, size FROM mcp_events WHERE created_at < ?",
            (cutoff,),
        ):
            key = (session_id, stream_id)
            streams[key] = max(streams.get(key, 0), seq)
            count, total = sessions.get(session_id, (0, 0))
            sessions[session_id] = (count + 1, total + size)
        if not streams:
            return
        conn.executemany(
            "UPDATE mcp_event_streams SET purged_through = MAX(purged_through, ?)"
            " WHERE session_id = ? AND stream_id = ?",
            [(seq, session_id, stream_id) for (session_id, stream_id), seq in streams.items()],
        )
        conn.executemany(
            "UPDATE mcp_event_sessions SET events = events - ?, bytes = bytes - ?"
            " WHERE session_id = ?",
            [(count, total, session_id) for session_id, (count, total) in sessions.items()],
        )
        conn.execute("DELETE FROM mcp_events WHERE created_at < ?", (cutoff,))

    def _enforce_bounds(
        self, conn: sqlite3.Connection, session_id: str, events: int, size: int
    ) -> None:
        """Drop the session's oldest events until it is within its count and byte bounds."""
        purged: dict[str, int] = {}
        last_id: int | None = None
        with contextlib.closing(
            conn.execute(
                "SELECT id, stream_id, seq, size FROM mcp_events WHERE session_id = ? ORDER BY id",
                (session_id,),
            )
        ) as oldest_first:
            for event_id, stream_id, seq, event_size in oldest_first:
                if events <= 1 or (
                    events <= self.max_events_per_session and size <= self.max_bytes_per_session
                ):
                    break
                last_id = event_id
                events -= 1
                size -= event_size
                purged[stream_id] = max(purged.get(stream_id, 0), seq)
        if last_id is None:
            return
        conn.execute(
            "DELETE FROM mcp_events WHERE session_id = ? AND id <= ?", (session_id, last_id)
        )
        conn.executemany(
            "UPDATE mcp_event_streams SET purged_through = MAX(purged_through, ?)"
            " WHERE session_id = ? AND stream_id = ?",
            [(seq, session_id, stream_id) for stream_id, seq in purged.items()],
        )
        conn.execute(
            "UPDATE mcp_event_sessions SET events = ?, bytes = ? WHERE session_id = ?",
            (events, size, session_id),
        )

    # -- EventStore ----------------------------------------------------------------

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store one event, then apply the bounds.

        Raises:
            ValueError: *seq* is not above every sequence number this stream
                has had (stored or already dropped).
            StoreUnavailable: SQLite failed.
        """
        now = self._clock()
        data = bytes(data)

        def append(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT last_seq FROM mcp_event_streams WHERE session_id = ? AND stream_id = ?",
                    (session_id, stream_id),
                ).fetchone()
                if row is not None and row[0] >= seq:
                    raise ValueError(f"sequence numbers must grow: {seq} after {row[0]}")
                if len(data) > self.max_bytes_per_session:
                    # Too large to keep within the bound: a gap marker instead.
                    conn.execute(
                        "INSERT INTO mcp_event_streams"
                        " (session_id, stream_id, last_seq, purged_through)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (session_id, stream_id)"
                        " DO UPDATE SET last_seq = excluded.last_seq,"
                        " purged_through = excluded.purged_through",
                        (session_id, stream_id, seq, seq),
                    )
                    self._expire(conn, now - self.max_age)
                    return
                conn.execute(
                    "INSERT INTO mcp_event_streams (session_id, stream_id, last_seq)"
                    " VALUES (?, ?, ?) ON CONFLICT (session_id, stream_id)"
                    " DO UPDATE SET last_seq = excluded.last_seq",
                    (session_id, stream_id, seq),
                )
                conn.execute(
                    "INSERT INTO mcp_events (session_id, stream_id, seq, created_at, size, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, stream_id, seq, now, len(data), data),
                )
                conn.execute(
                    "INSERT INTO mcp_event_sessions (session_id, events, bytes) VALUES (?, 1, ?)"
                    " ON CONFLICT (session_id) DO UPDATE"
                    " SET events = events + 1, bytes = bytes + excluded.bytes",
                    (session_id, len(data)),
                )
                events, size = conn.execute(
                    "SELECT events, bytes FROM mcp_event_sessions WHERE session_id = ?",
                    (session_id,),
                ).fetchone()
                if events > self.max_events_per_session or size > self.max_bytes_per_session:
                    self._enforce_bounds(conn, session_id, events, size)
                self._expire(conn, now - self.max_age)

        await self._db.run(append)

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        """The stream's events strictly after *after_seq*, oldest first.

        Returns an empty sequence for a stream this store never saw (or whose
        session was deleted).

        Raises:
            EventsPurged: A bound dropped events after *after_seq*.
            StoreUnavailable: SQLite failed.
        """
        cutoff = self._clock() - self.max_age

        def replay(conn: sqlite3.Connection) -> tuple[int, list[StoredEvent]]:
            with _transaction(conn):
                self._expire(conn, cutoff)
                row = conn.execute(
                    "SELECT purged_through FROM mcp_event_streams"
                    " WHERE session_id = ? AND stream_id = ?",
                    (session_id, stream_id),
                ).fetchone()
                if row is None:
                    return 0, []
                (purged_through,) = row
                if after_seq < purged_through:
                    return purged_through, []
                rows = conn.execute(
                    "SELECT seq, data FROM mcp_events"
                    " WHERE session_id = ? AND stream_id = ? AND seq > ? ORDER BY seq",
                    (session_id, stream_id, after_seq),
                ).fetchall()
                return purged_through, [StoredEvent(seq, bytes(data)) for seq, data in rows]

        purged_through, events = await self._db.run(replay)
        if after_seq < purged_through:
            raise EventsPurged(
                f"events {after_seq + 1}..{purged_through} of stream {stream_id!r} "
                "are no longer stored"
            )
        return events

    async def delete_session(self, session_id: str) -> None:
        """Forget the session's events and stream records.

        Raises:
            StoreUnavailable: SQLite failed.
        """

        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                for table in ("mcp_events", "mcp_event_streams", "mcp_event_sessions"):
                    conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

        await self._db.run(delete)
