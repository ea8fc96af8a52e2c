"""Bounded handles: server-minted, principal-bound state for stateful tools.

Split by job: ``_limits`` (sans-IO: limits, statistics, handle strings, the
retention text), ``_errors`` (the tool execution errors), ``_backend`` (the
protocol every backend implements), ``_memory`` (the default backend, a
sans-IO table on trio's clock), ``_sqlite`` and ``_redis`` (records that
outlive a process, on wall-clock time), and ``_store`` (:class:`HandleStore`).
"""

from ._backend import HandleBackend, HandleCreated
from ._errors import HandleError, HandleLimitReached, HandleNotFound
from ._limits import HandleLimits, HandlePolicy, HandleStatistics
from ._memory import InMemoryHandleBackend
from ._redis import RedisHandleBackend
from ._sqlite import SqliteHandleBackend
from ._store import HandleStore

__all__ = [
    "HandleBackend",
    "HandleCreated",
    "HandleError",
    "HandleLimitReached",
    "HandleLimits",
    "HandleNotFound",
    "HandlePolicy",
    "HandleStatistics",
    "HandleStore",
    "InMemoryHandleBackend",
    "RedisHandleBackend",
    "SqliteHandleBackend",
]
