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

Both stores create all of the tables (in ``_database``), versioned together with
``PRAGMA user_version``, so an event store and a session store may share one
file (each with its own connection). A file written by a newer schema is
refused rather than misread.

Every :class:`sqlite3.Error` and :class:`OSError` reaches the caller as
:class:`~trio_mcp_sessions.StoreUnavailable` with the original as
``__cause__``.

Split by job: ``_database`` (the schema and its migrations, the connection and
its worker thread), ``_events`` (:class:`SqliteEventStore`) and ``_sessions``
(:class:`SqliteSessionStore`).
"""

from ._events import SqliteEventStore
from ._sessions import SqliteSessionStore

__all__ = ["SqliteEventStore", "SqliteSessionStore"]
