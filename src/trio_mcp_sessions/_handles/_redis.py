"""The Redis handle backend: records shared by every instance, caps applied in Lua.

Each operation is one Lua script, so the cap check, the evictions and the
insert happen atomically on the Redis server: the caps hold across every
instance sharing the prefix and namespace. Times are the caller's clock
(wall-clock seconds by default), passed in, so expiry means the same as in
the SQLite backend; Redis TTLs, derived from the same durations, are only a
safety net that lets abandoned keys vanish.

Key layout, under ``B = {prefix}:hd:{namespace}``::

    B:r:{key}      hash   v = value, o = owner ("-" anonymous, "=" + principal), c, u
    B:use          zset   key -> last use        B:age   zset   key -> creation
    B:exp          zset   key -> expiry          B:own   hash   key -> principal
    B:pu:{p}       zset   key -> last use, one principal's
    B:pa:{p}       zset   key -> creation, one principal's

Principals are percent-escaped in key names. The scripts name keys beyond
``KEYS`` (an evicted record's principal is known only inside), so, like the
other Redis stores, they target one server or a replicated primary, not a
Cluster.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, final

import trio

from .._errors import StoreUnavailable
from .._stores._redis._client import _check_prefix, _map_backend_errors, _require_bytes_client
from .._stores._redis._scripts import _escape
from ._backend import HandleCreated
from ._limits import HandlePolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    import coredis

    from ._limits import HandleLimits

__all__ = ["RedisHandleBackend"]

_POLICY: Final = {
    HandlePolicy.LEAST_RECENTLY_USED: "lru",
    HandlePolicy.OLDEST: "oldest",
    HandlePolicy.REJECT: "reject",
}

# Expired records one script removes at most: 512 in a create or use, 4096 in a
# sweep (the next call takes the rest), so no script runs for long.
# ARGV[1] = B, ARGV[2] = now, ARGV[3] = idle (s, -1: none), ARGV[4] = lifetime (s, -1: none).
_PRELUDE = """
local B = ARGV[1]
local now = tonumber(ARGV[2])
local idle = tonumber(ARGV[3])
local lifetime = tonumber(ARGV[4])
local function expires(created, used)
  local at = 1e18
  if idle >= 0 then at = math.min(at, used + idle) end
  if lifetime >= 0 then at = math.min(at, created + lifetime) end
  return at
end
local function remove(key)
  local p = redis.call('HGET', B .. ':own', key)
  redis.call('DEL', B .. ':r:' .. key)
  redis.call('ZREM', B .. ':use', key)
  redis.call('ZREM', B .. ':age', key)
  redis.call('ZREM', B .. ':exp', key)
  if p then
    redis.call('HDEL', B .. ':own', key)
    redis.call('ZREM', B .. ':pu:' .. p, key)
    redis.call('ZREM', B .. ':pa:' .. p, key)
  end
end
local function purge(limit)
  local keys = redis.call('ZRANGEBYSCORE', B .. ':exp', '-inf', now, 'LIMIT', 0, limit)
  for _, key in ipairs(keys) do remove(key) end
  return #keys
end
-- The longest any record can live from now: every index key lives that long after a write.
local function keep(key, at)
  local bound = -1
  if idle >= 0 then bound = idle end
  if lifetime >= 0 and (bound < 0 or lifetime < bound) then bound = lifetime end
  if at then bound = at - now end
  if bound >= 0 and bound < 1e12 then
    redis.call('PEXPIRE', key, math.ceil(bound * 1000) + 1000)
  end
end
local function touch(key, p)
  for _, k in ipairs({B .. ':use', B .. ':age', B .. ':exp', B .. ':own'}) do keep(k) end
  if p ~= '' then
    keep(B .. ':pu:' .. p)
    keep(B .. ':pa:' .. p)
  end
end
"""

# ARGV[5] = key, ARGV[6] = principal ("" anonymous), ARGV[7] = value, ARGV[8] = max handles,
# ARGV[9] = max per principal, ARGV[10] = policy. Returns {created 0/1, evicted, expired, live}.
_CREATE_LUA = (
    _PRELUDE
    + """
local key, p, value = ARGV[5], ARGV[6], ARGV[7]
local max_handles, max_owned, policy = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
local expired = purge(512)
local total = redis.call('ZCARD', B .. ':age')
local owned = 0
if p ~= '' then owned = redis.call('ZCARD', B .. ':pa:' .. p) end
if policy == 'reject' and (total >= max_handles or (p ~= '' and owned >= max_owned)) then
  return {0, 0, expired, total}
end
local evicted = 0
local function evict(order, cap)
  local guard = 0
  while redis.call('ZCARD', order) >= cap and guard < 100000 do
    local victim = redis.call('ZRANGE', order, 0, 0)[1]
    remove(victim)
    redis.call('ZREM', order, victim)
    evicted = evicted + 1
    guard = guard + 1
  end
end
local lru = policy == 'lru'
if p ~= '' then evict(B .. (lru and ':pu:' or ':pa:') .. p, max_owned) end
evict(B .. (lru and ':use' or ':age'), max_handles)
if redis.call('EXISTS', B .. ':r:' .. key) == 1 then remove(key) end
local at = expires(now, now)
local owner = '-'
if p ~= '' then owner = '=' .. p end
redis.call('HSET', B .. ':r:' .. key, 'v', value, 'o', owner, 'c', now, 'u', now)
keep(B .. ':r:' .. key, at)
redis.call('ZADD', B .. ':use', now, key)
redis.call('ZADD', B .. ':age', now, key)
redis.call('ZADD', B .. ':exp', at, key)
if p ~= '' then
  redis.call('HSET', B .. ':own', key, p)
  redis.call('ZADD', B .. ':pu:' .. p, now, key)
  redis.call('ZADD', B .. ':pa:' .. p, now, key)
end
touch(key, p)
return {1, evicted, expired, redis.call('ZCARD', B .. ':age')}
"""
)

# ARGV[5] = key, ARGV[6] = principal, ARGV[7] = "1" to replace the value, ARGV[8] = value.
# Returns {expired} when absent, {expired, value} when found (and marks it used).
_USE_LUA = (
    _PRELUDE
    + """
local key, p = ARGV[5], ARGV[6]
local expired = purge(512)
local record = B .. ':r:' .. key
local fields = redis.call('HMGET', record, 'o', 'c', 'v')
local owner = '-'
if p ~= '' then owner = '=' .. p end
if not fields[1] then
  remove(key)
  return {expired}
end
if fields[1] ~= owner then return {expired} end
local value = fields[3]
if ARGV[7] == '1' then value = ARGV[8] end
local at = expires(tonumber(fields[2]), now)
redis.call('HSET', record, 'v', value, 'u', now)
keep(record, at)
redis.call('ZADD', B .. ':use', now, key)
redis.call('ZADD', B .. ':exp', at, key)
if p ~= '' then redis.call('ZADD', B .. ':pu:' .. p, now, key) end
touch(key, p)
return {expired, value}
"""
)

# ARGV[5] = key, ARGV[6] = principal. Returns {1 when a live record of the principal
# went, else 0; expired}.
_DELETE_LUA = (
    _PRELUDE
    + """
local key, p = ARGV[5], ARGV[6]
local expired = purge(512)
local owner = '-'
if p ~= '' then owner = '=' .. p end
local found = redis.call('HGET', B .. ':r:' .. key, 'o')
if not found then
  remove(key)
  return {0, expired}
end
if found ~= owner then return {0, expired} end
remove(key)
return {1, expired}
"""
)

# Returns {removed, live}.
_PURGE_LUA = (
    _PRELUDE
    + """
local removed = purge(4096)
return {removed, redis.call('ZCARD', B .. ':age')}
"""
)


def _seconds(value: float | None) -> str:
    return "-1" if value is None else repr(float(value))


@final
class RedisHandleBackend:
    """Handle records in Redis, shared by every instance (the caps hold across them).

    Args:
        client: An open ``coredis.Redis`` with ``decode_responses=False``.
        namespace: Keeps this store's records apart (one backend per store).
        prefix: Namespace of every key.
        clock: Seconds now; every instance's wall clock by default (they
            should agree to within a small fraction of the idle timeout).

    Raises:
        ValueError: For an empty prefix or a client that decodes responses.
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        namespace: str = "handles",
        prefix: str = "mcp",
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_prefix(prefix)
        _require_bytes_client(client)
        self.prefix = prefix
        self.namespace = namespace
        self.base = f"{prefix}:hd:{_escape(namespace)}"
        self._client = client
        self._clock = clock
        self._create = client.register_script(_CREATE_LUA)
        self._use = client.register_script(_USE_LUA)
        self._delete = client.register_script(_DELETE_LUA)
        self._purge = client.register_script(_PURGE_LUA)

    def _args(self, limits: HandleLimits) -> list[str | bytes | int]:
        return [
            self.base,
            repr(float(self._clock())),
            _seconds(limits.idle_timeout),
            _seconds(limits.max_lifetime),
        ]

    async def create(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> HandleCreated:
        await trio.lowlevel.checkpoint()
        args = [
            *self._args(limits),
            key,
            "" if principal is None else _escape(principal),
            value,
            limits.max_handles,
            limits.max_per_principal,
            _POLICY[limits.policy],
        ]
        with _map_backend_errors("creating a handle"):
            reply: object = await self._create(keys=[], args=args)
        if not (
            isinstance(reply, list) and len(reply) == 4 and all(isinstance(n, int) for n in reply)
        ):
            raise StoreUnavailable(f"redis: unexpected handle create reply {reply!r}")
        created, evicted, expired, live = reply
        return HandleCreated(bool(created), evicted, expired, live)

    async def _call_use(
        self, key: str, principal: str | None, value: bytes | None, limits: HandleLimits
    ) -> tuple[bytes | None, int]:
        await trio.lowlevel.checkpoint()
        args = [
            *self._args(limits),
            key,
            "" if principal is None else _escape(principal),
            "0" if value is None else "1",
            b"" if value is None else value,
        ]
        with _map_backend_errors("using a handle"):
            reply: object = await self._use(keys=[], args=args)
        if not (isinstance(reply, list) and 1 <= len(reply) <= 2 and isinstance(reply[0], int)):
            raise StoreUnavailable(f"redis: unexpected handle reply {reply!r}")
        found = reply[1] if len(reply) == 2 else None
        if found is not None and not isinstance(found, bytes):
            raise StoreUnavailable(f"redis: unexpected handle value {found!r}")
        return found, reply[0]

    async def get(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bytes | None, int]:
        return await self._call_use(key, principal, None, limits)

    async def update(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> tuple[bool, int]:
        found, expired = await self._call_use(key, principal, value, limits)
        return found is not None, expired

    async def delete(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bool, int]:
        await trio.lowlevel.checkpoint()
        args = [*self._args(limits), key, "" if principal is None else _escape(principal)]
        with _map_backend_errors("deleting a handle"):
            reply: object = await self._delete(keys=[], args=args)
        if not (
            isinstance(reply, list) and len(reply) == 2 and all(isinstance(n, int) for n in reply)
        ):
            raise StoreUnavailable(f"redis: unexpected handle delete reply {reply!r}")
        return reply[0] == 1, reply[1]

    async def purge_expired(self, limits: HandleLimits) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        with _map_backend_errors("purging handles"):
            reply: object = await self._purge(keys=[], args=self._args(limits))
        if not (
            isinstance(reply, list) and len(reply) == 2 and all(isinstance(n, int) for n in reply)
        ):
            raise StoreUnavailable(f"redis: unexpected handle purge reply {reply!r}")
        return reply[0], reply[1]

    async def aclose(self) -> None:
        """The client is the caller's: nothing to close here."""
        await trio.lowlevel.checkpoint()
