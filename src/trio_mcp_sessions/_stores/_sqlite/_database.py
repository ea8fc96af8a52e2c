"""The plumbing both SQLite stores share: the schema, its version, and one connection.

The schema (every table of both stores, versioned together with ``PRAGMA
user_version``) is created, or migrated, when a connection opens. A
:class:`_Database` runs each call in a worker thread within the caller's
deadline and maps SQLite's and the file system's errors; see the package
docstring for why.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Final, Self, TypeVar, final

import trio

from ..._errors import StoreUnavailable

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator
    from types import TracebackType

_T = TypeVar("_T")

#: The version of the stores' tables, kept in ``PRAGMA user_version``.
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
