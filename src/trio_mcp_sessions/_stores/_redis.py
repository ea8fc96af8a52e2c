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
and no coredis type or exception crosses this module's boundary. Every backend
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

Key layout (``prefix`` defaults to ``mcp``; ``:`` and ``%`` inside session and
stream ids are percent-escaped so keys cannot collide)::

    {prefix}:ev:{session}:{stream}   stream   one entry per event, id "<seq>-0"
    {prefix}:evs:{session}           zset     the session's stream keys, scored
                                              by when each expires (ms)
    {prefix}:sess:{session}          hash     r = record JSON, a = last_activity,
                                              l = log level ("" for none),
                                              s:{uri} = one per subscription
    {prefix}:rl:global               zset     creations in the global window
    {prefix}:rl:c:{client key}       zset     creations in one client's window

Every key carries a TTL, so an instance that dies leaves nothing behind for
long. The Lua scripts address keys of one session (or one acquire) together,
so they target a single Redis server (or a replicated primary), not a Cluster.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, final

import trio

from .._errors import EventsPurged, StoreUnavailable
from ._base import SessionRecord, StoredEvent

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import coredis

    from .._ratelimit import RateLimit

__all__ = ["RedisEventStore", "RedisRateLimiter", "RedisSessionStore", "open_redis"]


# -- shared helpers -------------------------------------------------------------------

#: Marks the Lua error reply for a sequence number that does not grow.
_SEQ_ERROR = "MCP_SEQ_NOT_GROWING"


def _backend_errors() -> tuple[type[BaseException], ...]:
    """What a failing backend raises; imported lazily, coredis is optional."""
    import anyio
    from coredis.exceptions import RedisError

    return (
        RedisError,
        OSError,  # includes TimeoutError (coredis' stream and connect timeouts)
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        anyio.EndOfStream,
    )


@contextlib.contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Turn any backend failure inside the block into :class:`StoreUnavailable`."""
    try:
        yield
    except _backend_errors() as exc:
        raise StoreUnavailable(f"redis: {what} failed: {exc!r}") from exc


def _require_bytes_client(client: Any) -> None:
    if getattr(client, "decode_responses", False):
        raise ValueError("the Redis client must be created with decode_responses=False")


def _escape(part: str) -> str:
    """Keep ``:`` (the key separator) out of an id; ``%`` is escaped to stay reversible."""
    return part.replace("%", "%25").replace(":", "%3A")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: The longest TTL set (about 35 years): what an infinite timeout becomes.
_MAX_TTL_MS = 1 << 40


def _milliseconds(seconds: float) -> int:
    """A positive duration in whole milliseconds, rounded up (Redis TTLs are integers).

    Infinite (or absurdly long) durations are capped at :data:`_MAX_TTL_MS`.
    """
    if not seconds * 1000 < _MAX_TTL_MS:
        return _MAX_TTL_MS
    return max(1, math.ceil(seconds * 1000))


def _check_prefix(prefix: str) -> None:
    if not prefix:
        raise ValueError("prefix must not be empty")


# -- events ---------------------------------------------------------------------------

# KEYS[1]: the stream; KEYS[2]: the session's index of stream keys.
# ARGV: seq, field ("d" data or "t" tombstone), payload, max entries, ttl (ms).
# A retried append whose first attempt landed (same seq on top) is accepted as
# is, so a client retry after a lost reply cannot turn into an error.
_APPEND_LUA = """
local seq = tonumber(ARGV[1])
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #top > 0 then
  last = tonumber(string.match(top[1][1], '^(%d+)-'))
end
if last > seq then
  return redis.error_reply('MCP_SEQ_NOT_GROWING ' .. ARGV[1] .. ' after ' .. last)
end
if last < seq then
  redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[4], ARGV[1] .. '-0', ARGV[2], ARGV[3])
end
local ttl = tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""

# KEYS[1]: the session's index. Deletes every stream it lists, then itself,
# atomically, so a concurrent append cannot slip a stream past the delete.
_DELETE_EVENTS_LUA = """
local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
for i = 1, #keys, 500 do
  redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
redis.call('DEL', KEYS[1])
return #keys
"""

_DATA = b"d"
_TOMBSTONE = b"t"


def _entry_seq(identifier: bytes | str) -> int:
    return int(_text(identifier).partition("-")[0])


@final
class RedisEventStore:
    """SSE events in Redis Streams, so any instance can resume any stream.

    One Redis Stream per (session, stream) holds the events as entries with
    id ``<seq>-0``. Because a session numbers each stream's events 1, 2, 3,
    ... without gaps, a replay whose first entry is not ``after_seq + 1``
    lost events to a bound, and raises :class:`EventsPurged`.

    Bounds (they differ from :class:`InMemoryEventStore`'s, which are per
    session):

    * ``max_events_per_session`` applies **per stream** (an exact
      ``XADD MAXLEN =``); a session holds at most that many events in each of
      its streams.
    * ``max_bytes_per_event`` applies **per event**: a larger event is not
      stored; a small tombstone takes its place, so a replay that would need
      it raises :class:`EventsPurged` instead of silently skipping it.
      ``append`` still succeeds (the event goes out live regardless).
    * ``max_age``: a stream expires this many seconds after its **last
      append** (the key's TTL, refreshed by each append); the events of a
      stream that is still being written are bounded by count, not age.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        prefix: Namespace of every key (see the module docstring for the layout).
        max_events_per_session: Events kept per stream; older ones are trimmed.
        max_bytes_per_event: Payloads larger than this are replaced by a tombstone.
        max_age: Seconds a stream is kept after its last append (``math.inf``:
            about 35 years).

    Raises:
        ValueError: For a bound that is not positive, an empty prefix, or a
            client that decodes responses.
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        prefix: str = "mcp",
        max_events_per_session: int = 1000,
        max_bytes_per_event: int = 1 << 20,
        max_age: float = 300.0,
    ) -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        if max_events_per_session < 1:
            raise ValueError("max_events_per_session must be at least 1")
        if max_bytes_per_event < 1:
            raise ValueError("max_bytes_per_event must be at least 1")
        if not max_age > 0:
            raise ValueError("max_age must be a positive number of seconds")
        self.prefix = prefix
        self.max_events_per_session = max_events_per_session
        self.max_bytes_per_event = max_bytes_per_event
        self.max_age = max_age
        self._client = client
        self._append = client.register_script(_APPEND_LUA)
        self._delete = client.register_script(_DELETE_EVENTS_LUA)

    def stream_key(self, session_id: str, stream_id: str) -> str:
        """The Redis key of one stream's events."""
        return f"{self.prefix}:ev:{_escape(session_id)}:{_escape(stream_id)}"

    def index_key(self, session_id: str) -> str:
        """The Redis key listing a session's stream keys."""
        return f"{self.prefix}:evs:{_escape(session_id)}"

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store one event (one round trip: an atomic script).

        Raises:
            ValueError: *seq* is below the stream's newest stored sequence number.
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        if seq < 1:
            raise ValueError(f"sequence numbers start at 1, got {seq}")
        stored = len(data) <= self.max_bytes_per_event
        try:
            await self._append(
                keys=[self.stream_key(session_id, stream_id), self.index_key(session_id)],
                args=[
                    seq,
                    _DATA if stored else _TOMBSTONE,
                    data if stored else b"",
                    self.max_events_per_session,
                    _milliseconds(self.max_age),
                ],
            )
        except _backend_errors() as exc:
            if _SEQ_ERROR in str(exc):
                raise ValueError(f"sequence numbers must grow: {exc}") from None
            raise StoreUnavailable(f"redis: storing an event failed: {exc!r}") from exc

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        """The stream's events strictly after *after_seq*, oldest first (one ``XRANGE``).

        Raises:
            EventsPurged: Events after *after_seq* were trimmed, expired, or
                too large to store.
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _unavailable("replaying events"):
            entries = await self._client.xrange(
                self.stream_key(session_id, stream_id), f"{max(after_seq, 0) + 1}-0", "+"
            )
        # Entries after after_seq that exist are contiguous (trimming only drops
        # the oldest), so checking the first one finds any gap.
        if entries and (first := _entry_seq(entries[0].identifier)) != after_seq + 1:
            raise EventsPurged(
                f"events {after_seq + 1}..{first - 1} of stream {stream_id!r} are no longer stored"
            )
        events: list[StoredEvent] = []
        for entry in entries:
            seq = _entry_seq(entry.identifier)
            data = entry.field_values.get(_DATA)
            if data is None:
                raise EventsPurged(
                    f"event {seq} of stream {stream_id!r} was larger than "
                    f"{self.max_bytes_per_event} bytes and was not stored"
                )
            events.append(StoredEvent(seq, data if isinstance(data, bytes) else data.encode()))
        return events

    async def delete_session(self, session_id: str) -> None:
        """Delete every stream of the session and its index (one atomic script).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _unavailable("deleting a session's events"):
            await self._delete(keys=[self.index_key(session_id)])


# -- sessions -------------------------------------------------------------------------

_RECORD = b"r"
_ACTIVITY = b"a"
_LEVEL = b"l"
_SUBSCRIPTION = b"s:"

# KEYS[1]: the session hash; ARGV: log level ("" for none), the number of
# URIs to add, those URIs, then the URIs to remove. Never resurrects. A
# record saved before the state fields existed gets its JSON's
# subscriptions as fields first.
_UPDATE_STATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'l') == 0 then
  local ok, record = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'r') or '')
  if ok and type(record) == 'table' and type(record['subscriptions']) == 'table' then
    for _, uri in ipairs(record['subscriptions']) do
      redis.call('HSET', KEYS[1], 's:' .. uri, '1')
    end
  end
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
local added = tonumber(ARGV[2])
for i = 3, 2 + added do
  redis.call('HSET', KEYS[1], 's:' .. ARGV[i], '1')
end
for i = 3 + added, #ARGV do
  redis.call('HDEL', KEYS[1], 's:' .. ARGV[i])
end
return 1
"""


def _uri_bytes(uri: str) -> bytes:
    return uri.encode("utf-8", "surrogatepass")


# KEYS[1]: the session hash; ARGV: ttl (ms), last_activity. Never resurrects.
_TOUCH_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'a', ARGV[2])
  return redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
"""


@final
class RedisSessionStore:
    """Session records in Redis, so another instance or a restart can restore them.

    Each record is a hash: ``r``, the record's JSON
    (:meth:`SessionRecord.to_json`), ``a``, its ``last_activity``, ``l``, its
    log level, and one ``s:<uri>`` field per subscription. A touch rewrites
    only ``a`` and the TTL, and :meth:`update_state` only ``l`` and the
    subscriptions that changed, each atomically and only if the record still
    exists (Lua scripts), so they never rewrite or resurrect the JSON;
    :meth:`load` returns the record with those fields applied.
    TTLs are set in milliseconds (rounded up); an infinite TTL (no idle
    timeout) becomes about 35 years.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        prefix: Namespace of every key.

    Raises:
        ValueError: For an empty prefix or a client that decodes responses.
    """

    def __init__(self, client: coredis.Redis[bytes], *, prefix: str = "mcp") -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        self.prefix = prefix
        self._client = client
        self._touch = client.register_script(_TOUCH_LUA)
        self._update_state = client.register_script(_UPDATE_STATE_LUA)

    def key(self, session_id: str) -> str:
        """The Redis key of one session's record."""
        return f"{self.prefix}:sess:{_escape(session_id)}"

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        """Create or replace the record; it expires after *ttl* seconds (one ``MULTI``).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        key = self.key(record.session_id)
        fields: dict[bytes, bytes | str] = {
            _RECORD: record.to_json(),
            _ACTIVITY: repr(float(record.last_activity)),
            _LEVEL: record.log_level or "",
        }
        for uri in record.subscriptions:
            fields[_SUBSCRIPTION + _uri_bytes(uri)] = b"1"
        with _unavailable("saving a session"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete([key])  # a replaced record keeps none of the old state
                pipe.hset(key, fields)
                pipe.pexpire(key, _milliseconds(ttl))

    async def load(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None`` when unknown or expired.

        Raises:
            StoreUnavailable: Redis failed, or holds something that is not a record.
        """
        await trio.lowlevel.checkpoint()
        with _unavailable("loading a session"):
            fields = await self._client.hgetall(self.key(session_id))
        raw = fields.get(_RECORD)
        if raw is None:
            return None
        try:
            record = SessionRecord.from_json(raw)
            activity = fields.get(_ACTIVITY)
            if activity is not None:
                record = replace(record, last_activity=float(activity))
            level = fields.get(_LEVEL)
            if level is not None:  # written by update_state or a save of this version
                uris = sorted(
                    bytes(name[len(_SUBSCRIPTION) :]).decode("utf-8", "surrogatepass")
                    for name in fields
                    if bytes(name).startswith(_SUBSCRIPTION)
                )
                record = replace(
                    record,
                    log_level=_text(level) or None,
                    subscriptions=tuple(uris),
                )
        except ValueError as exc:
            raise StoreUnavailable(f"redis: unreadable session record: {exc}") from exc
        return record

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        """Push the expiry to *ttl* seconds from now and record *last_activity*.

        A no-op for an unknown or expired id.

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _unavailable("touching a session"):
            await self._touch(
                keys=[self.key(session_id)],
                args=[_milliseconds(ttl), repr(float(last_activity))],
            )

    async def update_state(
        self,
        session_id: str,
        *,
        log_level: str | None,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
    ) -> None:
        """Set the log level and add and remove subscriptions: a field each, not the record.

        A no-op for an unknown or expired id (one atomic script).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        args: list[bytes | str | int] = [log_level or "", len(subscribe)]
        args += [_uri_bytes(uri) for uri in subscribe]
        args += [_uri_bytes(uri) for uri in unsubscribe]
        with _unavailable("updating a session's state"):
            await self._update_state(keys=[self.key(session_id)], args=args)

    async def delete(self, session_id: str) -> None:
        """Remove the record (idempotent).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _unavailable("deleting a session"):
            await self._client.delete([self.key(session_id)])

    async def ttl(self, session_id: str) -> float:
        """Seconds until the record expires: 0 when it does not exist.

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        with _unavailable("reading a session's TTL"):
            remaining = await self._client.pttl(self.key(session_id))
        if remaining == -2:
            return 0.0
        if remaining == -1:
            return math.inf
        return remaining / 1000


# -- rate limiting --------------------------------------------------------------------

# KEYS: one sorted set per window; ARGV[1]: a unique member; then for window i
# ARGV[2i] = max creations, ARGV[2i+1] = window (µs). Time is the server's
# (TIME), so every instance measures the same windows. Returns 0 when the
# creation was recorded in every window, else the µs until the tightest frees
# a slot (nothing recorded). Same semantics as SlidingWindowLimiter: a stamp
# leaves its window once it is `window` old (inclusive).
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local blocking = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local free_in = tonumber(blocking[2]) + window - now
    if free_in > wait then
      wait = free_in
    end
  end
end
if wait > 0 then
  return wait
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 * i + 1]) / 1000))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Receipt:
    """What :meth:`RedisRateLimiter.refund` needs: the member added to each window."""

    entries: tuple[tuple[str, str], ...]


@final
class RedisRateLimiter:
    """A session-creation rate limiter shared by every instance using one Redis.

    The same sliding windows as :class:`~trio_mcp_sessions.SlidingWindowLimiter`
    (a global one, and one per client key), kept in sorted sets and checked
    and updated by one atomic Lua script timed by Redis' own clock, so the
    budget holds across instances whatever their clocks say. A creation is
    recorded in every window or in none. Keys expire one window after their
    newest creation, so one-off client keys cost nothing for long.

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        global_limit: Shared by every client of every instance, or ``None``.
        per_client: Applied to each client key separately, or ``None``.
        prefix: Namespace of every key.

    Raises:
        ValueError: For an empty prefix or a client that decodes responses.
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        global_limit: RateLimit | None,
        per_client: RateLimit | None,
        prefix: str = "mcp",
    ) -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        self.global_limit = global_limit
        self.per_client = per_client
        self.prefix = prefix
        self._client = client
        self._acquire = client.register_script(_ACQUIRE_LUA)

    @property
    def enabled(self) -> bool:
        return self.global_limit is not None or self.per_client is not None

    def global_key(self) -> str:
        return f"{self.prefix}:rl:global"

    def client_key(self, key: str) -> str:
        return f"{self.prefix}:rl:c:{key}"

    async def acquire(self, key: str | None) -> tuple[float, object]:
        """Try to spend one creation for client *key* (``None``: global window only).

        Returns:
            ``(retry_after, receipt)``: ``retry_after`` is 0 when allowed (the
            creation is recorded; pass *receipt* to :meth:`refund` to give it
            back), else the seconds until the tightest window frees a slot,
            and ``None`` (nothing was recorded).

        Raises:
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        windows: list[tuple[str, RateLimit]] = []
        if self.global_limit is not None:
            windows.append((self.global_key(), self.global_limit))
        if self.per_client is not None and key is not None:
            windows.append((self.client_key(key), self.per_client))
        if not windows:
            return 0.0, _Receipt(())
        member = secrets.token_hex(8)
        args: list[str | int] = [member]
        for _, limit in windows:
            args += [limit.max_creations, max(1, round(limit.window * 1_000_000))]
        with _unavailable("acquiring a creation"):
            wait: object = await self._acquire(keys=[k for k, _ in windows], args=args)
        if not isinstance(wait, int):
            raise StoreUnavailable(f"redis: unexpected rate limit reply {wait!r}")
        if wait > 0:
            return wait / 1_000_000, None
        return 0.0, _Receipt(tuple((k, member) for k, _ in windows))

    async def refund(self, receipt: object) -> None:
        """Give back a creation recorded by :meth:`acquire` (its ``initialize`` failed).

        ``None`` (a refused acquire's receipt) refunds nothing; refunding
        twice, or after the window passed, is harmless.

        Raises:
            TypeError: *receipt* did not come from :meth:`acquire`.
            StoreUnavailable: Redis failed.
        """
        await trio.lowlevel.checkpoint()
        if receipt is None:
            return
        if not isinstance(receipt, _Receipt):
            raise TypeError(f"not a RedisRateLimiter receipt: {receipt!r}")
        if not receipt.entries:
            return
        with _unavailable("refunding a creation"):
            async with self._client.pipeline(transaction=False) as pipe:
                for zset, member in receipt.entries:
                    pipe.zrem(zset, [member])


async def open_redis(
    url: str,
    nursery: trio.Nursery,
    *,
    connect_timeout: float = 1.0,
    stream_timeout: float = 1.0,
) -> coredis.Redis[bytes]:
    """Open a coredis client for *url* that lives as long as *nursery*.

    The client gets the settings this module recommends: short connect and
    read timeouts, and a retry policy that retries a lost connection once but
    never a timeout, so a dead or frozen Redis fails a call in about a second
    and a restarted one is picked up again without a restart of ours.
    """
    import coredis
    from coredis.retry import ConstantRetryPolicy

    async def run(*, task_status: trio.TaskStatus[coredis.Redis[bytes]]) -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url,
            decode_responses=False,
            connect_timeout=connect_timeout,
            stream_timeout=stream_timeout,
            retry_policy=ConstantRetryPolicy(
                (coredis.exceptions.ConnectionError,), retries=1, delay=0.05
            ),
        )
        async with client:
            task_status.started(client)
            await trio.sleep_forever()

    client: coredis.Redis[bytes] = await nursery.start(run)
    return client
