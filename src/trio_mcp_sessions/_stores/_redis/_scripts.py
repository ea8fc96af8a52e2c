"""What lives where in Redis: the key layout, the fields, and the Lua scripts.

Every key name, hash field and stream entry id is built here, next to the
scripts that address them, so the layout has one owner.

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
    {prefix}:rl:call:{kind}[:{name}][:c:{client key}]
                                     zset     2026-07-28 requests in one call
                                              budget's window (kind: calls,
                                              method, tool, discover; name and
                                              client key escaped)

Every key carries a TTL, so an instance that dies leaves nothing behind for
long. The Lua scripts address keys of one session (or one acquire) together,
so they target a single Redis server (or a replicated primary), not a Cluster.
"""

from __future__ import annotations

import math

#: Marks the Lua error reply for a sequence number that does not grow.
_SEQ_ERROR = "MCP_SEQ_NOT_GROWING"


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


# -- events ---------------------------------------------------------------------------


def _stream_key(prefix: str, session_id: str, stream_id: str) -> str:
    return f"{prefix}:ev:{_escape(session_id)}:{_escape(stream_id)}"


def _index_key(prefix: str, session_id: str) -> str:
    return f"{prefix}:evs:{_escape(session_id)}"


#: An entry's field: the event's payload, or a tombstone for one too large to store.
_DATA = b"d"
_TOMBSTONE = b"t"


def _entry_id(seq: int) -> str:
    return f"{seq}-0"


def _entry_seq(identifier: bytes | str) -> int:
    return int(_text(identifier).partition("-")[0])


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


# -- sessions -------------------------------------------------------------------------


def _session_key(prefix: str, session_id: str) -> str:
    return f"{prefix}:sess:{_escape(session_id)}"


#: The session hash's fields (the scripts below spell them out too).
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


# -- rate limiting --------------------------------------------------------------------


def _global_window_key(prefix: str) -> str:
    return f"{prefix}:rl:global"


def _client_window_key(prefix: str, key: str) -> str:
    return f"{prefix}:rl:c:{key}"


def _call_window_key(prefix: str, kind: str, name: str, client: str | None) -> str:
    """One call budget's window: its own keys, apart from the creation windows'."""
    key = f"{prefix}:rl:call:{kind}"
    if name:
        key += f":{_escape(name)}"
    if client is not None:
        key += f":c:{_escape(client)}"
    return key


# The sliding windows of creations and of the call budgets, checked and
# recorded all or none. KEYS: one sorted set per window; ARGV[1]: a unique
# member; then for window i ARGV[2i] = max creations, ARGV[2i+1] = window (µs).
# Time is the server's (TIME), so every instance measures the same windows.
# Returns {0, 0} when recorded in every window, else {µs until the tightest
# frees a slot, its 1-based index} (nothing recorded), so a refusal can name
# the budget. Same semantics as SlidingWindowLimiter: a stamp leaves its
# window once it is `window` old (inclusive).
_SPEND_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local blocking = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local free_in = tonumber(oldest[2]) + window - now
    if free_in > wait then
      wait = free_in
      blocking = i
    end
  end
end
if wait > 0 then
  return {wait, blocking}
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 * i + 1]) / 1000))
end
return {0, 0}
"""
