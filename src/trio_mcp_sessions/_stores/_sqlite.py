"""Event and session stores in one SQLite file, through :mod:`trio.to_thread`.

Why SQLite: it ships with Python (stdlib :mod:`sqlite3`, no extra dependency),
keeps everything in one file, and that file survives a restart, so a process
that comes back on the same path can still restore sessions and replay the
events their clients missed. It is meant for one host (a single process or a
few sharing a local disk); several hosts need a network store such as Redis.

How it runs: each store object owns one connection (opened lazily, in a worker
thread, on first use) and sends every call to a worker thread through
:func:`trio.to_thread.run_sync` with a per-store ``CapacityLimiter(1)``, so
the connection is used by one thread at a time and the trio loop never
blocks on disk. The file is in WAL mode with ``synchronous=NORMAL``; each
call is one ``BEGIN IMMEDIATE`` transaction (or one autocommit statement), so
a cancelled call either happened entirely or not at all: a call already in its
thread finishes (the default ``abandon_on_cancel=False``) and the cancellation
lands at the caller's next checkpoint. No call outlives its caller's
deadline by much: a write waiting for another connection's lock waits at most
until the caller's deadline (the manager's ``store_timeout``), or
*busy_timeout* seconds without one, and a statement still running at the
deadline is interrupted, so its thread is free again and the cancellation
lands on time.

Both stores create all of this module's tables, versioned together with
``PRAGMA user_version``, so an event store and a session store may share one
file (each with its own connection). A file written by a newer schema is
refused rather than misread.

Every :class:`sqlite3.Error` and :class:`OSError` reaches the caller as
:class:`~trio_mcp_sessions.StoreUnavailable` with the original as
``__cause__``.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Final, Self, TypeVar, final

import trio

from .._errors import EventsPurged, StoreUnavailable
from ._base import SessionRecord, StoredEvent

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

__all__ = ["SqliteEventStore", "SqliteSessionStore"]

_T = TypeVar("_T")

#: The version of this module's tables, kept in ``PRAGMA user_version``.
SCHEMA_VERSION: Final = 2

#: Seconds a call without a deadline waits for another connection's write lock.
BUSY_TIMEOUT: Final = 5.0
#: SQLite virtual-machine steps between two looks at the deadline.
_PROGRESS_STEPS: Final = 1000
_INIT_LOCK = threading.Lock()

_SCHEMA: Final = (
    # One row per stored event; ``id`` is the insertion order, oldest first.
    """CREATE TABLE IF NOT EXISTS mcp_events (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        created_at REAL NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS mcp_events_by_stream
        ON mcp_events (session_id, stream_id, seq)""",
    "CREATE INDEX IF NOT EXISTS mcp_events_by_session ON mcp_events (session_id, id)",
    "CREATE INDEX IF NOT EXISTS mcp_events_by_age ON mcp_events (created_at)",
    # One row per stream ever appended to, until its session is deleted: the
    # highest sequence number seen (so numbers only grow) and the highest one
    # dropped by a bound (so a replay from before it is a gap, not a partial).
    """CREATE TABLE IF NOT EXISTS mcp_event_streams (
        session_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        purged_through INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, stream_id)
    ) WITHOUT ROWID""",
    # Running totals per session, for the count and byte bounds.
    """CREATE TABLE IF NOT EXISTS mcp_event_sessions (
        session_id TEXT NOT NULL PRIMARY KEY,
        events INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # Session records as JSON text (readable with the sqlite3 shell).
    """CREATE TABLE IF NOT EXISTS mcp_session_records (
        session_id TEXT NOT NULL PRIMARY KEY,
        expires_at REAL NOT NULL,
        record TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS mcp_session_records_by_expiry
        ON mcp_session_records (expires_at)""",
    # Version 2: a record's mutable state, changed a row at a time (a
    # subscribe adds one row instead of rewriting the record). A state row
    # makes them authoritative over the record's JSON; records saved by
    # version 1 have none, and their JSON applies.
    """CREATE TABLE IF NOT EXISTS mcp_session_state (
        session_id TEXT NOT NULL PRIMARY KEY,
        log_level TEXT
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS mcp_session_subscriptions (
        session_id TEXT NOT NULL,
        uri TEXT NOT NULL,
        PRIMARY KEY (session_id, uri)
    ) WITHOUT ROWID""",
)

#: The tables holding one session's record, for deletes.
_RECORD_TABLES: Final = ("mcp_session_records", "mcp_session_state", "mcp_session_subscriptions")


def _delete_records(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    """Delete the records matching *where* (on ``mcp_session_records``) with their state."""
    for table in _RECORD_TABLES[1:]:
        conn.execute(
            f"DELETE FROM {table} WHERE session_id IN"
            f" (SELECT session_id FROM mcp_session_records WHERE {where})",
            args,
        )
    conn.execute(f"DELETE FROM mcp_session_records WHERE {where}", args)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_schema(conn: sqlite3.Connection) -> None:
    with _transaction(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this library's ({SCHEMA_VERSION})"
            )
        for statement in _SCHEMA:
            conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


@final
class _Database:
    """One lazily opened connection, used from one worker thread at a time."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        if not busy_timeout > 0 or math.isinf(busy_timeout):
            raise ValueError("busy_timeout must be a positive, finite number of seconds")
        self.path = path
        self.busy_timeout = busy_timeout
        self._limiter = trio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        #: ``time.monotonic()`` past which the running call gives up (worker thread only).
        self._deadline = math.inf
        self._busy_ms = -1

    def _past_deadline(self) -> bool:
        # SQLite's progress handler: a true result interrupts the statement.
        return time.monotonic() > self._deadline

    def _connection(self) -> sqlite3.Connection:
        # Runs in a worker thread, holding the limiter.
        if self._closed:
            raise trio.ClosedResourceError("the store is closed")
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=max(0.0, self._deadline - time.monotonic()),
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                # Switching to WAL and creating the schema can meet "database is
                # locked" without SQLite's busy handler ever waiting (another
                # connection doing the same): serialize it in this process and
                # retry, bounded, against other processes.
                with _INIT_LOCK:
                    deadline = self._deadline
                    while True:
                        try:
                            conn.execute("PRAGMA journal_mode=WAL")
                            conn.execute("PRAGMA synchronous=NORMAL")
                            _create_schema(conn)
                            break
                        except sqlite3.OperationalError as exc:
                            if "locked" not in str(exc) or time.monotonic() > deadline:
                                raise
                            time.sleep(0.01)
            except BaseException:
                conn.close()
                raise
            conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
            self._conn = conn
            self._busy_ms = -1
        return self._conn

    def _call(self, fn: Callable[[sqlite3.Connection], _T], deadline: float) -> _T:
        # Runs in a worker thread, holding the limiter; *deadline* is monotonic.
        self._deadline = deadline
        budget = deadline - time.monotonic()
        try:
            conn = self._connection()
            # Wait for another connection's lock only as long as the caller does.
            busy_ms = max(1, math.ceil(budget * 1000))
            if busy_ms != self._busy_ms:
                conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
                self._busy_ms = busy_ms
            return fn(conn)
        finally:
            self._deadline = math.inf
            # A statement interrupted at the deadline may have left its
            # transaction open (even its ROLLBACK can be cut): end it here.
            if self._conn is not None and self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` in a worker thread; always a checkpoint.

        Raises:
            StoreUnavailable: SQLite or the file system failed.
            trio.ClosedResourceError: The store was closed.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the store is closed")
        # The caller's deadline bounds the thread's work, time queued for the
        # connection included (the call waits for the limiter cancellably).
        remaining = trio.current_effective_deadline() - trio.current_time()
        deadline = time.monotonic() + min(self.busy_timeout, remaining)
        try:
            return await trio.to_thread.run_sync(self._call, fn, deadline, limiter=self._limiter)
        except (sqlite3.Error, OSError) as exc:
            # Given up at the caller's deadline: that is the caller's timeout.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise StoreUnavailable(f"SQLite store at {self.path!s} failed: {exc}") from exc

    def _close_now(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        # Close even when cancelled (trio's aclose convention); waits for the
        # call in progress, if any, which keeps the connection to itself.
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(self._close_now, limiter=self._limiter)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"closing SQLite store at {self.path!s}: {exc}") from exc
        await trio.lowlevel.checkpoint_if_cancelled()


class _SqliteStore:
    """What both SQLite stores share: one database, closed with the store."""

    _db: _Database

    async def aclose(self) -> None:
        """Close the connection (after the call in progress, if any); idempotent.

        Later calls raise :class:`trio.ClosedResourceError`. The file stays.
        """
        await self._db.aclose()

    async def __aenter__(self) -> Self:
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


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


def _live_record(conn: sqlite3.Connection, session_id: str, now: float) -> tuple[str] | None:
    """The stored record's row, if it has not expired (for an update in place)."""
    row: tuple[str] | None = conn.execute(
        "SELECT record FROM mcp_session_records WHERE session_id = ? AND expires_at > ?",
        (session_id, now),
    ).fetchone()
    return row


@final
class SqliteSessionStore(_SqliteStore):
    """Session records in a SQLite file, so sessions can be restored after a restart.

    A record expires *ttl* seconds after its last :meth:`save` or
    :meth:`touch` (expired when ``expires_at <= clock()``). Expired records
    are deleted lazily: by :meth:`load` of that id, and all at once on each
    :meth:`save`, so the file does not grow with sessions nobody deleted.

    Args:
        path: The database file (created if missing). It may be shared with
            a :class:`SqliteEventStore`.
        clock: Seconds now; the default wall clock stays meaningful across
            restarts and processes. Called in the trio thread.
        busy_timeout: Seconds a call waits for another connection's lock at
            most; a caller's deadline (the manager's ``store_timeout``)
            shortens it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = path
        self._clock = clock
        self._db = _Database(path, busy_timeout=busy_timeout)

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        """Create or replace the record; it expires after *ttl* seconds.

        Raises:
            StoreUnavailable: SQLite failed.
        """
        now = self._clock()
        text = record.to_json().decode()

        def save(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                _delete_records(conn, "expires_at <= ?", (now,))
                conn.execute(
                    "INSERT INTO mcp_session_records (session_id, expires_at, record)"
                    " VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE"
                    " SET expires_at = excluded.expires_at, record = excluded.record",
                    (record.session_id, now + ttl, text),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO mcp_session_state (session_id, log_level)"
                    " VALUES (?, ?)",
                    (record.session_id, record.log_level),
                )
                conn.execute(
                    "DELETE FROM mcp_session_subscriptions WHERE session_id = ?",
                    (record.session_id,),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO mcp_session_subscriptions (session_id, uri)"
                    " VALUES (?, ?)",
                    [(record.session_id, uri) for uri in record.subscriptions],
                )

        await self._db.run(save)

    async def load(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None`` when unknown or expired.

        Raises:
            StoreUnavailable: SQLite failed, or the stored row is not a record.
        """
        now = self._clock()

        def load(
            conn: sqlite3.Connection,
        ) -> tuple[str, tuple[str | None, list[str]] | None] | None:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT expires_at, record FROM mcp_session_records WHERE session_id = ?",
                    (session_id,),
                ).fetchone()
                if row is None:
                    return None
                expires_at, text = row
                if expires_at <= now:
                    # Only if still expired: a concurrent save may have renewed it.
                    _delete_records(conn, "session_id = ? AND expires_at <= ?", (session_id, now))
                    return None
                level = conn.execute(
                    "SELECT log_level FROM mcp_session_state WHERE session_id = ?",
                    (session_id,),
                ).fetchone()
                if level is None:
                    return str(text), None  # saved by schema version 1: the JSON holds it all
                uris = conn.execute(
                    "SELECT uri FROM mcp_session_subscriptions WHERE session_id = ? ORDER BY uri",
                    (session_id,),
                ).fetchall()
                return str(text), (level[0], [uri for (uri,) in uris])

        found = await self._db.run(load)
        if found is None:
            return None
        text, state = found
        try:
            record = SessionRecord.from_json(text)
        except ValueError as exc:
            raise StoreUnavailable(f"corrupt session record for {session_id!r}") from exc
        if state is not None:
            record = replace(record, log_level=state[0], subscriptions=tuple(state[1]))
        return record

    async def update_state(
        self,
        session_id: str,
        *,
        log_level: str | None,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
    ) -> None:
        """Set the log level and add and remove subscriptions: a row each, not the record.

        A no-op for an unknown or expired id.

        Raises:
            StoreUnavailable: SQLite failed.
        """
        now = self._clock()
        added = [(session_id, uri) for uri in subscribe]
        removed = [(session_id, uri) for uri in unsubscribe]

        def update(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                row = _live_record(conn, session_id, now)
                if row is None:
                    return
                known = conn.execute(
                    "SELECT 1 FROM mcp_session_state WHERE session_id = ?", (session_id,)
                ).fetchone()
                if known is None:
                    # A version-1 record: its JSON's subscriptions become rows first.
                    with contextlib.suppress(ValueError):
                        conn.executemany(
                            "INSERT OR IGNORE INTO mcp_session_subscriptions (session_id, uri)"
                            " VALUES (?, ?)",
                            [
                                (session_id, uri)
                                for uri in SessionRecord.from_json(row[0]).subscriptions
                            ],
                        )
                conn.execute(
                    "INSERT OR REPLACE INTO mcp_session_state (session_id, log_level)"
                    " VALUES (?, ?)",
                    (session_id, log_level),
                )
                conn.executemany(
                    "DELETE FROM mcp_session_subscriptions WHERE session_id = ? AND uri = ?",
                    removed,
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO mcp_session_subscriptions (session_id, uri)"
                    " VALUES (?, ?)",
                    added,
                )

        await self._db.run(update)

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        """Push the expiry to *ttl* seconds from now and record *last_activity*.

        A no-op for an unknown or expired id (it is not resurrected).

        Raises:
            StoreUnavailable: SQLite failed, or the stored row is not a record.
        """
        now = self._clock()

        def touch(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                row = _live_record(conn, session_id, now)
                if row is None:
                    return
                record = replace(SessionRecord.from_json(row[0]), last_activity=last_activity)
                conn.execute(
                    "UPDATE mcp_session_records SET expires_at = ?, record = ?"
                    " WHERE session_id = ?",
                    (now + ttl, record.to_json().decode(), session_id),
                )

        try:
            await self._db.run(touch)
        except ValueError as exc:
            raise StoreUnavailable(f"corrupt session record for {session_id!r}") from exc

    async def delete(self, session_id: str) -> None:
        """Remove the record (idempotent).

        Raises:
            StoreUnavailable: SQLite failed.
        """

        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                for table in _RECORD_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

        await self._db.run(delete)
