"""Redis-specific behaviour of the Redis stores and the shared rate limiter.

The behaviour every store shares is in ``test_store_contract.py``; here: key
layout and TTLs, nothing left behind, bounds that are Redis' own, one
creation budget across instances, and failure and recovery of the server.
"""

from __future__ import annotations

import gc
import math
import subprocess
import sys
from typing import TYPE_CHECKING

import coredis
import pytest
import trio
import trio.testing

from _redis_server import (  # noqa: F401 (fixtures)
    RedisServer,
    redis_client,
    redis_server_fixture,
    redis_server_process_fixture,
)
from trio_mcp_sessions import (
    EventsPurged,
    EventStore,
    RateLimit,
    SessionRecord,
    SessionStore,
    StoreUnavailable,
)
from trio_mcp_sessions._ratelimit import SharedRateLimiter
from trio_mcp_sessions._stores._redis import RedisEventStore, RedisRateLimiter, RedisSessionStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def record(session_id: str = "s1", **changes: float) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        protocol_version="2025-11-25",
        initialize_params={"protocolVersion": "2025-11-25", "capabilities": {}, "roots": []},
        subscriptions=(),
        created_at=1000.0,
        last_activity=changes.get("last_activity", 1001.0),
    )


async def keys(client: coredis.Redis[bytes], prefix: str) -> set[bytes]:
    return {key async for key in client.scan_iter(match=f"{prefix}:*")}


# -- events ---------------------------------------------------------------------------


async def test_event_keys_carry_ttls(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisEventStore(client, prefix="p", max_age=30.0)
    assert isinstance(store, EventStore)
    await store.append("s", "a", 1, b"x")
    assert await keys(client, "p") == {b"p:ev:s:a", b"p:evs:s"}
    for key in (b"p:ev:s:a", b"p:evs:s"):
        assert 29_000 < await client.pttl(key) <= 30_000
    assert await client.type(b"p:ev:s:a") == b"stream"
    entries = await client.xrange(b"p:ev:s:a")
    assert [(e.identifier, dict(e.field_values)) for e in entries] == [(b"1-0", {b"d": b"x"})]


async def test_delete_session_leaves_no_keys(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisEventStore(client, prefix="p")
    for stream in ("a", "b", "c"):
        for seq in (1, 2):
            await store.append("s", stream, seq, b"x")
    await store.append("other", "a", 1, b"y")
    await store.delete_session("s")
    assert await keys(client, "p") == {b"p:ev:other:a", b"p:evs:other"}
    await store.delete_session("other")
    await store.delete_session("never-seen")
    assert await keys(client, "p") == set()


async def test_count_bound_is_per_stream(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    store = RedisEventStore(await redis_client(nursery, redis_server), max_events_per_session=2)
    for seq in (1, 2, 3):
        await store.append("s", "a", seq, b"a")
    await store.append("s", "b", 1, b"b")
    assert [e.seq for e in await store.replay_after("s", "a", 1)] == [2, 3]
    assert [e.seq for e in await store.replay_after("s", "b", 0)] == [1]
    with pytest.raises(EventsPurged, match=r"events 1\.\.1 "):
        await store.replay_after("s", "a", 0)


async def test_oversized_event_is_a_gap_not_an_error(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisEventStore(client, prefix="p", max_bytes_per_event=10)
    await store.append("s", "a", 1, b"small")
    await store.append("s", "a", 2, b"x" * 11)  # not stored, but no error
    await store.append("s", "a", 3, b"small")
    for after in (0, 1):
        with pytest.raises(EventsPurged, match="larger than 10 bytes"):
            await store.replay_after("s", "a", after)
    assert [e.data for e in await store.replay_after("s", "a", 2)] == [b"small"]
    # The last event too large: a replay from before it must not look complete.
    await store.append("s", "a", 4, b"y" * 11)
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "a", 3)
    assert [e.field_values for e in await client.xrange(b"p:ev:s:a", b"4-0", b"4-0")] == [
        {b"t": b""}
    ]


async def test_sequence_numbers_must_grow_but_a_retry_is_harmless(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    store = RedisEventStore(await redis_client(nursery, redis_server))
    await store.append("s", "a", 1, b"one")
    await store.append("s", "a", 2, b"two")
    await store.append("s", "a", 2, b"two")  # a client retry after a lost reply
    assert [e.seq for e in await store.replay_after("s", "a", 0)] == [1, 2]
    with pytest.raises(ValueError, match="must grow"):
        await store.append("s", "a", 1, b"again")
    with pytest.raises(ValueError, match="start at 1"):
        await store.append("s", "a", 0, b"zero")


async def test_a_stream_that_expired_and_restarted_reports_the_gap(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisEventStore(client, prefix="p")
    await store.append("s", "a", 1, b"x")
    await client.delete([b"p:ev:s:a"])  # as if its TTL ran out
    await store.append("s", "a", 5, b"y")
    with pytest.raises(EventsPurged, match=r"events 2\.\.4 "):
        await store.replay_after("s", "a", 1)
    assert [e.seq for e in await store.replay_after("s", "a", 4)] == [5]
    assert list(await store.replay_after("s", "a", 5)) == []
    assert list(await store.replay_after("s", "a", 99)) == []


async def test_the_session_index_forgets_expired_streams(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisEventStore(client, prefix="p", max_age=0.2)
    await store.append("s", "old", 1, b"x")
    await trio.sleep(0.3)
    await store.append("s", "new", 1, b"y")
    assert await client.zrange(b"p:evs:s", 0, -1) == (b"p:ev:s:new",)
    assert await keys(client, "p") == {b"p:ev:s:new", b"p:evs:s"}


async def test_ids_cannot_collide_in_keys(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    store = RedisEventStore(await redis_client(nursery, redis_server), prefix="p")
    await store.append("a:b", "c", 1, b"first")
    await store.append("a", "b:c", 1, b"second")
    await store.append("a%3Ab", "c", 1, b"third")
    assert [e.data for e in await store.replay_after("a:b", "c", 0)] == [b"first"]
    assert [e.data for e in await store.replay_after("a", "b:c", 0)] == [b"second"]
    assert [e.data for e in await store.replay_after("a%3Ab", "c", 0)] == [b"third"]
    await store.delete_session("a")
    assert [e.data for e in await store.replay_after("a:b", "c", 0)] == [b"first"]


# -- sessions -------------------------------------------------------------------------


async def test_session_layout_and_touch(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisSessionStore(client, prefix="p")
    assert isinstance(store, SessionStore)
    assert await store.ttl("s1") == 0.0
    await store.save(record(), ttl=0.5)
    assert await keys(client, "p") == {b"p:sess:s1"}
    assert await client.hgetall(b"p:sess:s1") == {
        b"r": record().to_json(),
        b"a": b"1001.0",
        b"l": b"",  # no log level
    }
    assert 0.2 < await store.ttl("s1") <= 0.5  # milliseconds, not rounded up to 1 s
    await store.touch("s1", ttl=30, last_activity=1234.5678901234)
    assert 29 < await store.ttl("s1") <= 30
    assert await store.load("s1") == record(last_activity=1234.5678901234)
    # The record's JSON stays as saved: only the activity field changes.
    assert await client.hget(b"p:sess:s1", b"r") == record().to_json()
    # A subscribe or setLevel changes a field each, never the JSON.
    await store.update_state("s1", log_level="debug", subscribe=["res://a", "res://b"])
    await store.update_state("s1", log_level="debug", unsubscribe=["res://a"])
    fields = await client.hgetall(b"p:sess:s1")
    assert (fields[b"r"], fields[b"l"], fields[b"s:res://b"]) == (
        record().to_json(),
        b"debug",
        b"1",
    )
    assert b"s:res://a" not in fields
    loaded = await store.load("s1")
    assert loaded is not None
    assert (loaded.log_level, loaded.subscriptions) == ("debug", ("res://b",))
    await store.delete("s1")
    assert await keys(client, "p") == set()
    await store.touch("s1", ttl=30, last_activity=1.0)
    await store.update_state("s1", log_level="info", subscribe=["res://c"])
    assert await keys(client, "p") == set()  # neither resurrects a deleted record


async def test_a_record_saved_before_state_fields_keeps_its_subscriptions(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisSessionStore(client, prefix="p")
    old = SessionRecord(
        session_id="s1",
        protocol_version="2025-11-25",
        initialize_params={},
        log_level="info",
        subscriptions=("res://a", "res://b"),
    )
    # What the previous version wrote: the JSON and the activity only.
    await client.hset(b"p:sess:s1", {b"r": old.to_json(), b"a": b"0.0"})
    assert await store.load("s1") == old
    await store.update_state("s1", log_level="info", unsubscribe=["res://a"])
    loaded = await store.load("s1")
    assert loaded is not None
    assert loaded.subscriptions == ("res://b",)


async def test_session_expires_in_redis(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    store = RedisSessionStore(await redis_client(nursery, redis_server))
    await store.save(record(), ttl=0.1)
    await trio.sleep(0.25)
    assert await store.load("s1") is None
    await store.touch("s1", ttl=30, last_activity=1.0)  # no resurrection
    assert await store.load("s1") is None


async def test_infinite_timeouts_become_very_long_ttls(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    sessions = RedisSessionStore(client, prefix="p")
    await sessions.save(record(), ttl=math.inf)
    assert await sessions.ttl("s1") > 30 * 365 * 86400
    await sessions.touch("s1", ttl=math.inf, last_activity=2.0)
    assert await sessions.ttl("s1") > 30 * 365 * 86400
    events = RedisEventStore(client, prefix="p", max_age=math.inf)
    await events.append("s", "a", 1, b"x")
    assert await client.pttl(b"p:ev:s:a") > 30 * 365 * 86400 * 1000


async def test_unreadable_record_is_unavailable(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisSessionStore(client, prefix="p")
    await client.hset(b"p:sess:bad", {b"r": b"{not json"})
    with pytest.raises(StoreUnavailable, match="unreadable"):
        await store.load("bad")
    await client.set(b"p:sess:wrongtype", b"x")
    with pytest.raises(StoreUnavailable) as info:
        await store.load("wrongtype")
    assert isinstance(info.value.__cause__, coredis.exceptions.RedisError)


# -- rate limiting --------------------------------------------------------------------


async def test_two_instances_share_one_budget(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    window = 1.0
    instances = [
        RedisRateLimiter(
            await redis_client(nursery, redis_server),
            global_limit=RateLimit(3, window),
            per_client=None,
        )
        for _ in range(2)
    ]
    assert isinstance(instances[0], SharedRateLimiter)
    first = trio.current_time()
    for i in range(3):
        wait, receipt = await instances[i % 2].acquire("anyone")
        assert wait == 0.0
        assert receipt is not None
    for instance in instances:
        wait, receipt = await instance.acquire("anyone")
        assert receipt is None
        expected = first + window - trio.current_time()
        assert 0 < wait <= window
        assert abs(wait - expected) < 0.25
    await trio.sleep(wait + 0.02)
    wait, _ = await instances[1].acquire("anyone")
    assert wait == 0.0


async def test_refund_gives_a_creation_back(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    limiter = RedisRateLimiter(client, global_limit=RateLimit(1, 60), per_client=None, prefix="p")
    wait, receipt = await limiter.acquire(None)
    assert wait == 0.0
    wait, refused = await limiter.acquire(None)
    assert 59 < wait <= 60
    await limiter.refund(refused)  # None: nothing to give back
    await limiter.refund(receipt)
    await limiter.refund(receipt)  # twice is harmless
    assert (await limiter.acquire(None))[0] == 0.0
    with pytest.raises(TypeError):
        await limiter.refund(object())
    assert 59_000 < await client.pttl(b"p:rl:global") <= 60_000


async def test_client_windows_are_independent_and_all_or_nothing(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    limiter = RedisRateLimiter(
        client, global_limit=RateLimit(2, 60), per_client=RateLimit(1, 30), prefix="p"
    )
    assert (await limiter.acquire("a"))[0] == 0.0
    wait, _ = await limiter.acquire("a")
    assert 29 < wait <= 30  # the client's window, not the global one
    assert (await limiter.acquire("b"))[0] == 0.0
    wait, _ = await limiter.acquire("c")
    assert 59 < wait <= 60  # the global window is full
    # Refusals recorded nothing: "c" has no window, the global one holds two.
    assert await client.zcard(b"p:rl:global") == 2
    assert await keys(client, "p") == {b"p:rl:global", b"p:rl:c:a", b"p:rl:c:b"}
    assert 29_000 < await client.pttl(b"p:rl:c:a") <= 30_000


async def test_per_client_only_and_disabled(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    limiter = RedisRateLimiter(client, global_limit=None, per_client=RateLimit(1, 30), prefix="p")
    assert (await limiter.acquire("::1"))[0] == 0.0
    assert (await limiter.acquire("::1"))[0] > 0
    for _ in range(3):
        assert (await limiter.acquire(None))[0] == 0.0  # no key: no window applies
    off = RedisRateLimiter(client, global_limit=None, per_client=None, prefix="off")
    assert not off.enabled
    wait, receipt = await off.acquire("x")
    assert wait == 0.0
    await off.refund(receipt)
    assert await keys(client, "off") == set()


# -- construction ---------------------------------------------------------------------


def test_constructors_reject_bad_arguments() -> None:
    decoding = coredis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisSessionStore(decoding)  # type: ignore[arg-type]
    raw = coredis.Redis(host="127.0.0.1", port=1)
    for bad in ({"max_events_per_session": 0}, {"max_bytes_per_event": 0}, {"max_age": 0}):
        with pytest.raises(ValueError, match="must be"):
            RedisEventStore(raw, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        RedisRateLimiter(raw, global_limit=None, per_client=None, prefix="")


def test_the_module_imports_without_coredis() -> None:
    code = (
        "import sys; sys.modules['coredis'] = None\n"
        "import trio_mcp_sessions, trio_mcp_sessions._stores._redis as r\n"
        "print(sorted(r.__all__))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "RedisEventStore" in result.stdout


# -- failures -------------------------------------------------------------------------


def every_call(
    events: RedisEventStore, sessions: RedisSessionStore, limiter: RedisRateLimiter
) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "append": lambda: events.append("s", "a", 2, b"y"),
        "replay_after": lambda: events.replay_after("s", "a", 1),
        "delete_session": lambda: events.delete_session("other"),
        "save": lambda: sessions.save(record("s2"), ttl=60),
        "load": lambda: sessions.load("s1"),
        "touch": lambda: sessions.touch("s1", ttl=60, last_activity=5.0),
        "delete": lambda: sessions.delete("other"),
        "ttl": lambda: sessions.ttl("s1"),
        "acquire": lambda: limiter.acquire("k"),
        "refund": lambda: limiter.refund(receipt_of(limiter)),
    }


_receipts: dict[int, object] = {}


def receipt_of(limiter: RedisRateLimiter) -> object:
    return _receipts[id(limiter)]


async def stores(
    nursery: trio.Nursery, server: RedisServer
) -> tuple[RedisEventStore, RedisSessionStore, RedisRateLimiter]:
    client = await redis_client(nursery, server)
    events = RedisEventStore(client, prefix="f")
    sessions = RedisSessionStore(client, prefix="f")
    limiter = RedisRateLimiter(
        client, global_limit=RateLimit(100, 60), per_client=RateLimit(100, 60), prefix="f"
    )
    await events.append("s", "a", 1, b"x")
    await sessions.save(record(), ttl=60)
    _, _receipts[id(limiter)] = await limiter.acquire("k")
    return events, sessions, limiter


async def check_all_work(
    events: RedisEventStore, sessions: RedisSessionStore, limiter: RedisRateLimiter
) -> None:
    with trio.fail_after(5):
        for call in every_call(events, sessions, limiter).values():
            await call()


# coredis 6.9 leaks the anyio memory streams of a connection whose connect
# failed (BaseConnection.run never closes them), and anyio warns when they are
# collected. Collect them in the tests that expect them, not in a later test.
coredis_leaks_failed_connections = pytest.mark.filterwarnings(
    "ignore:Unclosed <MemoryObject:ResourceWarning"
)


@coredis_leaks_failed_connections
async def test_a_dead_server_fails_fast_and_recovery_needs_no_new_objects(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    events, sessions, limiter = await stores(nursery, redis_server)
    try:
        redis_server.stop()
        for name, call in every_call(events, sessions, limiter).items():
            start = trio.current_time()
            with trio.fail_after(5), pytest.raises(StoreUnavailable) as info:
                await call()
            assert isinstance(info.value.__cause__, coredis.exceptions.ConnectionError), name
            assert trio.current_time() - start < 2, name
        redis_server.start()  # empty: no data, no loaded scripts
        await check_all_work(events, sessions, limiter)
        assert [e.seq for e in await events.replay_after("s", "a", 1)] == [2]
        with pytest.raises(EventsPurged):  # event 1 died with the server
            await events.replay_after("s", "a", 0)
    finally:
        gc.collect()


@coredis_leaks_failed_connections
async def test_a_hung_server_fails_after_the_stream_timeout(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    events, sessions, limiter = await stores(nursery, redis_server)
    failed: dict[str, BaseException | None] = {}

    async def expect_failure(name: str, call: Callable[[], Awaitable[object]]) -> None:
        with trio.fail_after(3), pytest.raises(StoreUnavailable) as info:
            await call()
        failed[name] = info.value.__cause__

    redis_server.pause()
    try:
        async with trio.open_nursery() as calls:  # concurrently: each may take ~2 s
            for name, call in every_call(events, sessions, limiter).items():
                calls.start_soon(expect_failure, name, call)
    finally:
        redis_server.resume()
        gc.collect()
    # A call on an open connection times out reading its reply; one that opens
    # a new connection (the kernel accepts it) times out in the handshake.
    assert set(failed) == set(every_call(events, sessions, limiter))
    for name, cause in failed.items():
        assert isinstance(cause, (TimeoutError, coredis.exceptions.ConnectionError)), name
    await check_all_work(events, sessions, limiter)


async def test_cancelled_calls_leave_the_client_usable(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    store = RedisEventStore(client)
    await store.append("s", "a", 1, b"one")
    redis_server.pause()
    try:
        with trio.move_on_after(0.1) as scope:
            await store.append("s", "a", 2, b"two")
        assert scope.cancelled_caught
    finally:
        redis_server.resume()
    # The cancelled append may or may not have reached Redis; either way the
    # next call gets its own reply, and seq 2 again is accepted.
    await store.append("s", "a", 2, b"two")
    assert [e.data for e in await store.replay_after("s", "a", 0)] == [b"one", b"two"]


async def test_every_public_method_is_a_checkpoint(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    events, sessions, limiter = await stores(nursery, redis_server)
    for call in every_call(events, sessions, limiter).values():
        with trio.testing.assert_checkpoints():
            await call()
    with trio.testing.assert_checkpoints():
        await limiter.refund(None)
