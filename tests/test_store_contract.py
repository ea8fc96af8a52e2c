"""One contract, every store: memory, SQLite and Redis must behave the same.

Expiry of the in-process stores is tested on trio's clock; Redis keeps time
itself, so for it the contract checks the TTL it set instead of waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest
import trio

from trio_mcp_sessions import (
    EventsPurged,
    EventStore,
    SessionRecord,
    SessionStateUpdates,
    SessionStore,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

KINDS = ["memory", "sqlite", "redis"]


def record(session_id: str = "s1", **changes: Any) -> SessionRecord:
    base: dict[str, Any] = {
        "session_id": session_id,
        "protocol_version": "2025-11-25",
        "initialize_params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "c", "version": "1"},
        },
        "log_level": "info",
        "subscriptions": ("res://a",),
        "principal": "alice",
        "created_at": 1000.0,
        "last_activity": 1001.0,
    }
    base.update(changes)
    return SessionRecord(**base)


@pytest.fixture(params=KINDS)
async def event_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """``make(**bounds)`` builds a fresh event store of one kind; closed at teardown."""
    kind = request.param
    opened: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def make(**bounds: Any) -> EventStore:
            if kind == "memory":
                from trio_mcp_sessions import InMemoryEventStore

                store: Any = InMemoryEventStore(**bounds)
            elif kind == "sqlite":
                from trio_mcp_sessions import SqliteEventStore

                store = SqliteEventStore(
                    tmp_path / f"events-{len(opened)}.db", clock=trio.current_time, **bounds
                )
            else:
                from _redis_server import redis_client
                from trio_mcp_sessions import RedisEventStore

                redis = request.getfixturevalue("redis_server")
                client = await redis_client(nursery, redis)
                store = RedisEventStore(client, prefix=f"t{len(opened)}", **bounds)
            opened.append(store)
            return store  # type: ignore[no-any-return]

        yield make
        for store in opened:
            close = getattr(store, "aclose", None)
            if close is not None:
                await close()
        nursery.cancel_scope.cancel()


@pytest.fixture(params=KINDS)
async def session_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    kind = request.param
    async with trio.open_nursery() as nursery:
        if kind == "memory":
            from trio_mcp_sessions import InMemorySessionStore

            store: Any = InMemorySessionStore()
        elif kind == "sqlite":
            from trio_mcp_sessions import SqliteSessionStore

            store = SqliteSessionStore(tmp_path / "sessions.db", clock=trio.current_time)
        else:
            from _redis_server import redis_client
            from trio_mcp_sessions import RedisSessionStore

            redis = request.getfixturevalue("redis_server")
            store = RedisSessionStore(await redis_client(nursery, redis), prefix="contract")
        store.kind = kind
        yield store
        close = getattr(store, "aclose", None)
        if close is not None:
            await close()
        nursery.cancel_scope.cancel()


# -- event stores ------------------------------------------------------------------------


async def test_events_replay_exclusively_per_stream(event_store_factory: Any) -> None:
    store = await event_store_factory()
    assert isinstance(store, EventStore)
    for seq in (1, 2, 3):
        await store.append("s1", "a", seq, b'{"n":%d}' % seq)
    await store.append("s1", "b", 1, b'{"b":1}')
    assert [e.seq for e in await store.replay_after("s1", "a", 1)] == [2, 3]
    assert [e.data for e in await store.replay_after("s1", "a", 0)] == [
        b'{"n":1}',
        b'{"n":2}',
        b'{"n":3}',
    ]
    assert list(await store.replay_after("s1", "a", 3)) == []
    assert [e.data for e in await store.replay_after("s1", "b", 0)] == [b'{"b":1}']
    assert list(await store.replay_after("s1", "unknown", 0)) == []


async def test_events_of_one_session_are_invisible_to_another(event_store_factory: Any) -> None:
    store = await event_store_factory()
    await store.append("s1", "a", 1, b"secret")
    assert list(await store.replay_after("s2", "a", 0)) == []


async def test_count_bound_reports_a_gap(event_store_factory: Any) -> None:
    store = await event_store_factory(max_events_per_session=3)
    for seq in range(1, 8):
        await store.append("s", "a", seq, b"x")
    replay = await store.replay_after("s", "a", 4)
    assert [e.seq for e in replay] == [5, 6, 7]
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "a", 1)


async def test_delete_session_forgets_everything(event_store_factory: Any) -> None:
    store = await event_store_factory()
    await store.append("s", "a", 1, b"x")
    await store.append("s", "b", 1, b"y")
    await store.append("other", "a", 1, b"z")
    await store.delete_session("s")
    assert list(await store.replay_after("s", "a", 0)) == []
    assert list(await store.replay_after("s", "b", 0)) == []
    assert [e.data for e in await store.replay_after("other", "a", 0)] == [b"z"]


async def test_large_and_binary_safe_payloads(event_store_factory: Any) -> None:
    store = await event_store_factory()
    payload = ('{"text":"' + "é" * 20_000 + '"}').encode()
    await store.append("s", "a", 1, payload)
    assert (await store.replay_after("s", "a", 0))[0].data == payload


# -- session stores ----------------------------------------------------------------------


async def test_session_record_round_trip(session_store: Any) -> None:
    assert isinstance(session_store, SessionStore)
    assert await session_store.load("s1") is None
    await session_store.save(record(), ttl=60)
    assert await session_store.load("s1") == record()
    await session_store.save(record(log_level="debug", subscriptions=()), ttl=60)
    assert await session_store.load("s1") == record(log_level="debug", subscriptions=())


async def test_session_delete_is_final(session_store: Any) -> None:
    await session_store.save(record(), ttl=60)
    await session_store.delete("s1")
    assert await session_store.load("s1") is None
    await session_store.delete("s1")  # idempotent
    await session_store.touch("s1", ttl=60, last_activity=5.0)  # no resurrection
    assert await session_store.load("s1") is None


async def test_session_touch_updates_activity(session_store: Any) -> None:
    await session_store.save(record(), ttl=60)
    await session_store.touch("s1", ttl=60, last_activity=2000.0)
    loaded = await session_store.load("s1")
    assert loaded is not None
    assert loaded.last_activity == 2000.0


async def test_session_ttl(session_store: Any, autojump_clock: trio.testing.MockClock) -> None:
    if session_store.kind == "redis":
        # Redis keeps its own time: check the TTL it set instead of waiting for it.
        await session_store.save(record(), ttl=60)
        ttl = await session_store.ttl("s1")
        assert 55 <= ttl <= 60
        await session_store.touch("s1", ttl=120, last_activity=3.0)
        assert 115 <= await session_store.ttl("s1") <= 120
        return
    await session_store.save(record(), ttl=60)
    await trio.sleep(59)
    await session_store.touch("s1", ttl=60, last_activity=3.0)
    await trio.sleep(59)
    assert await session_store.load("s1") is not None
    await trio.sleep(1)
    assert await session_store.load("s1") is None


async def test_session_state_updates_in_place(session_store: Any) -> None:
    """A subscribe or setLevel is stored as the change; a save replaces it all."""
    assert isinstance(session_store, SessionStateUpdates)
    assert isinstance(session_store, SessionStore)  # the optional part adds to the protocol
    session_store = cast("Any", session_store)
    await session_store.save(record(), ttl=60)  # subscribed to res://a, level info
    await session_store.update_state("s1", log_level="debug", subscribe=["res://b", "res://c"])
    await session_store.update_state("s1", log_level="debug", unsubscribe=["res://a", "res://x"])
    await session_store.update_state("s1", log_level=None, subscribe=["res://c"])  # already in
    assert await session_store.load("s1") == record(
        log_level=None, subscriptions=("res://b", "res://c")
    )
    await session_store.touch("s1", ttl=60, last_activity=2000.0)
    loaded = await session_store.load("s1")
    assert loaded is not None
    assert (loaded.subscriptions, loaded.last_activity) == (("res://b", "res://c"), 2000.0)
    await session_store.save(record(subscriptions=("res://z",)), ttl=60)
    assert await session_store.load("s1") == record(subscriptions=("res://z",))
    await session_store.delete("s1")
    await session_store.update_state("s1", log_level="info", subscribe=["res://q"])
    assert await session_store.load("s1") is None  # no resurrection
    await session_store.save(record(), ttl=60)
    assert await session_store.load("s1") == record()  # nothing of the deleted state


def test_record_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a session record"):
        SessionRecord.from_json(b'{"session_id": 1}')
    assert SessionRecord.from_json(record().to_json()) == record()
