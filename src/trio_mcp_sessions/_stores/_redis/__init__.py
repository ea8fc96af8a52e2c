"""Redis-backed event store, session store and creation rate limiter.

These let several server instances (or one instance across restarts) share
what the in-process stores keep in memory: SSE events for ``Last-Event-ID``
resumption, session records for restoring a session elsewhere, and one
creation budget for all instances together.

Why coredis: it is built on anyio, so it runs natively under :func:`trio.run`
(no thread per call, no asyncio bridge), cancels cleanly, and multiplexes
concurrent commands over one connection. redis-py's asyncio client does not
run under trio. coredis is an optional dependency (``pip install
trio-mcp-sessions[redis]``): it is imported only when a Redis class is used,
and no coredis type or exception crosses this package's boundary. Every backend
failure (connection refused or lost, timeouts, error replies) becomes
:class:`~trio_mcp_sessions.StoreUnavailable` with the original as
``__cause__``.

Clients are the caller's: open a ``coredis.Redis(..., decode_responses=False)``,
keep its ``async with`` open for as long as the stores are used, and give it
timeouts so a dead or hung server fails calls quickly instead of stalling
them. coredis' default retry policy retries timeouts twice (a hung server
then costs three stream timeouts); retrying only lost connections is enough
to ride over a server restart::

    client = coredis.Redis(
        host="redis", port=6379, decode_responses=False,
        connect_timeout=1.0, stream_timeout=1.0,
        retry_policy=coredis.retry.ConstantRetryPolicy(
            (coredis.exceptions.ConnectionError,), retries=1, delay=0.05
        ),
    )
    async with client:
        manager = BoundedSessionManager(
            server, event_store=RedisEventStore(client), session_store=RedisSessionStore(client),
            rate_limiter=RedisRateLimiter(client, global_limit=RateLimit(100, 60), per_client=None),
        )

Every key lives under ``prefix`` and carries a TTL, so an instance that dies
leaves nothing behind for long. The layout, key by key, is in ``_scripts``
with the Lua scripts, which address keys of one session (or one acquire)
together, so they target a single Redis server (or a replicated primary), not
a Cluster.

Split by job: ``_scripts`` (the key layout and the Lua scripts), ``_client``
(:func:`open_redis`, the checks of a caller's client, and the one mapping of
backend errors), ``_events`` (:class:`RedisEventStore`), ``_sessions``
(:class:`RedisSessionStore`), ``_limiter`` (:class:`RedisRateLimiter`) and
``_broadcast`` (:class:`RedisBroadcast`: changes to every instance over
pub/sub, for the listen streams and sessions of each).
"""

from ._broadcast import RedisBroadcast, RedisBroadcastStatistics
from ._client import open_redis
from ._events import RedisEventStore
from ._limiter import RedisRateLimiter
from ._sessions import RedisSessionStore

__all__ = [
    "RedisBroadcast",
    "RedisBroadcastStatistics",
    "RedisEventStore",
    "RedisRateLimiter",
    "RedisSessionStore",
    "open_redis",
]
