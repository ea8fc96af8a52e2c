"""The SQLite handle backend: records in a file, caps applied in one transaction.

Each call is one ``BEGIN IMMEDIATE`` transaction in a worker thread (the
session stores' :class:`_Database`), so a cap check and the insert it allows
are atomic for every process sharing the file. Times are wall-clock seconds
by default: the records outlive the process, and trio's clock does not.
The table is this backend's own, created on first use beside the session
stores' (it is not part of their versioned schema).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Final, final

from .._stores._sqlite._database import BUSY_TIMEOUT, _Database, _SqliteStore, _transaction
from ._backend import HandleCreated
from ._limits import HandlePolicy

if TYPE_CHECKING:
    import os
    import sqlite3
    from collections.abc import Callable

    from ._limits import HandleLimits

__all__ = ["SqliteHandleBackend"]

#: What "never expires" is stored as (a finite REAL sorts and compares plainly).
_NEVER: Final = 1e18

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS mcp_handles (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        principal TEXT,
        created REAL NOT NULL,
        used REAL NOT NULL,
        expires_at REAL NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS mcp_handles_by_expiry ON mcp_handles (namespace, expires_at)",
    "CREATE INDEX IF NOT EXISTS mcp_handles_by_use ON mcp_handles (namespace, used)",
    "CREATE INDEX IF NOT EXISTS mcp_handles_by_age ON mcp_handles (namespace, created)",
    """CREATE INDEX IF NOT EXISTS mcp_handles_by_principal
        ON mcp_handles (namespace, principal, used)""",
)


def _expires_at(created: float, used: float, limits: HandleLimits) -> float:
    at = limits.expires_at(created, used)
    return _NEVER if math.isinf(at) else at


@final
class SqliteHandleBackend(_SqliteStore):
    """Handle records in a SQLite file: they survive a restart and are shared by the
    processes that open the file (the caps hold across them).

    Args:
        path: The database file (created if missing); may be shared with the
            session and event stores.
        namespace: Keeps this store's records apart from another store's in
            the same file (one backend per :class:`HandleStore`).
        clock: Seconds now; the default wall clock stays meaningful across
            restarts. Called in the trio thread.
        busy_timeout: Seconds a call waits for another connection's lock at most.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = "handles",
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = path
        self.namespace = namespace
        self._clock = clock
        self._db = _Database(path, busy_timeout=busy_timeout)
        self._ready = False

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if not self._ready:
            for statement in _SCHEMA:
                conn.execute(statement)
            self._ready = True

    def _purge(self, conn: sqlite3.Connection, now: float) -> int:
        return conn.execute(
            "DELETE FROM mcp_handles WHERE namespace = ? AND expires_at <= ?",
            (self.namespace, now),
        ).rowcount

    def _make_room(
        self, conn: sqlite3.Connection, principal: str | None, cap: int, policy: HandlePolicy
    ) -> int | None:
        """Evict down to ``cap - 1`` records (of *principal*, or all); ``None``: refuse."""
        where, args = "namespace = ?", [self.namespace]
        if principal is not None:
            where, args = "namespace = ? AND principal = ?", [self.namespace, principal]
        (count,) = conn.execute(f"SELECT count(*) FROM mcp_handles WHERE {where}", args).fetchone()
        over = count - cap + 1
        if over <= 0:
            return 0
        if policy is HandlePolicy.REJECT:
            return None
        order = "used" if policy is HandlePolicy.LEAST_RECENTLY_USED else "created"
        return conn.execute(
            f"DELETE FROM mcp_handles WHERE namespace = ? AND key IN (SELECT key FROM"
            f" mcp_handles WHERE {where} ORDER BY {order}, key LIMIT ?)",
            [self.namespace, *args, over],
        ).rowcount

    def _count(self, conn: sqlite3.Connection) -> int:
        (count,) = conn.execute(
            "SELECT count(*) FROM mcp_handles WHERE namespace = ?", (self.namespace,)
        ).fetchone()
        return int(count)

    async def create(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> HandleCreated:
        now = self._clock()

        def create(conn: sqlite3.Connection) -> HandleCreated:
            self._prepare(conn)
            with _transaction(conn):
                expired = self._purge(conn, now)
                evicted = 0
                caps: list[tuple[str | None, int]] = [(None, limits.max_handles)]
                if principal is not None:
                    caps.insert(0, (principal, limits.max_per_principal))
                for who, cap in caps:  # under REJECT nothing is removed before a refusal
                    removed = self._make_room(conn, who, cap, limits.policy)
                    if removed is None:
                        return HandleCreated(False, 0, expired, self._count(conn))
                    evicted += removed
                conn.execute(
                    "INSERT OR REPLACE INTO mcp_handles (namespace, key, principal, created, used,"
                    " expires_at, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.namespace,
                        key,
                        principal,
                        now,
                        now,
                        _expires_at(now, now, limits),
                        value,
                    ),
                )
                return HandleCreated(True, evicted, expired, self._count(conn))

        return await self._db.run(create)

    def _use(
        self,
        conn: sqlite3.Connection,
        key: str,
        principal: str | None,
        now: float,
        limits: HandleLimits,
        value: bytes | None,
    ) -> tuple[bytes | None, int]:
        """Mark a live record of *principal* used (and replace its value); its value.

        Every expired record goes first (an indexed delete), as in the other backends.
        """
        expired = self._purge(conn, now)
        row = conn.execute(
            "SELECT principal, created, value FROM mcp_handles WHERE namespace = ? AND key = ?",
            (self.namespace, key),
        ).fetchone()
        if row is None:
            return None, expired
        owner, created, stored = row
        if owner != principal:
            return None, expired
        stored = stored if value is None else value
        conn.execute(
            "UPDATE mcp_handles SET used = ?, expires_at = ?, value = ?"
            " WHERE namespace = ? AND key = ?",
            (now, _expires_at(created, now, limits), stored, self.namespace, key),
        )
        return bytes(stored), expired

    async def get(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bytes | None, int]:
        now = self._clock()

        def get(conn: sqlite3.Connection) -> tuple[bytes | None, int]:
            self._prepare(conn)
            with _transaction(conn):
                return self._use(conn, key, principal, now, limits, None)

        return await self._db.run(get)

    async def update(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> tuple[bool, int]:
        now = self._clock()

        def update(conn: sqlite3.Connection) -> tuple[bool, int]:
            self._prepare(conn)
            with _transaction(conn):
                found, expired = self._use(conn, key, principal, now, limits, value)
                return found is not None, expired

        return await self._db.run(update)

    async def delete(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bool, int]:
        now = self._clock()

        def delete(conn: sqlite3.Connection) -> tuple[bool, int]:
            self._prepare(conn)
            with _transaction(conn):
                found, expired = self._use(conn, key, principal, now, limits, None)
                if found is not None:
                    conn.execute(
                        "DELETE FROM mcp_handles WHERE namespace = ? AND key = ?",
                        (self.namespace, key),
                    )
                return found is not None, expired

        return await self._db.run(delete)

    async def purge_expired(self, limits: HandleLimits) -> tuple[int, int]:
        now = self._clock()

        def purge(conn: sqlite3.Connection) -> tuple[int, int]:
            self._prepare(conn)
            with _transaction(conn):
                return self._purge(conn, now), self._count(conn)

        return await self._db.run(purge)
