"""The SQLite session store: records, with their mutable state a row at a time."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Final, final

from ..._errors import StoreUnavailable
from .._base import SessionRecord
from ._database import BUSY_TIMEOUT, _Database, _SqliteStore, _transaction

if TYPE_CHECKING:
    import os
    import sqlite3
    from collections.abc import Callable, Sequence

__all__ = ["SqliteSessionStore"]

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
