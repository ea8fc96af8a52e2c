"""One contract, every handle backend: memory, SQLite and Redis must behave the same.

Every backend runs on trio's clock here (the persistent ones take a ``clock``;
in production theirs is the wall clock), so expiry is tested by waiting on the
``autojump_clock`` (each test asks for it: pytest-trio does not see a clock
only a fixture asks for). Caps are checked under concurrency, and for the
persistent backends across two instances sharing one file or one Redis.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from _peers import FakePeer
from trio_mcp_sessions import (
    Context,
    HandleBackend,
    HandleError,
    HandleLimitReached,
    HandleLimits,
    HandleNotFound,
    HandlePolicy,
    HandleStore,
    InMemoryHandleBackend,
    RedisHandleBackend,
    SqliteHandleBackend,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

KINDS = ["memory", "sqlite", "redis"]
ALICE, BOB = "alice", "bob"


def ctx(principal: str | None) -> Context:
    return Context(FakePeer(), 1, None, principal=principal)


@pytest.fixture(params=KINDS)
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``make(shared_with=None, **limits)``: a new store of one kind (a second instance of
    *shared_with*'s backend when given: the same file, the same Redis keys)."""
    kind = request.param
    opened: list[HandleStore] = []
    async with trio.open_nursery() as nursery:
        client: Any = None
        if kind == "redis":
            from _redis_server import redis_client

            client = await redis_client(nursery, request.getfixturevalue("redis_server"))

        async def build(shared_with: HandleStore | None = None, **limits: Any) -> HandleStore:
            backend: HandleBackend
            if kind == "memory":
                backend = InMemoryHandleBackend() if shared_with is None else shared_with.backend
            elif kind == "sqlite":
                backend = SqliteHandleBackend(tmp_path / "handles.db", clock=trio.current_time)
            else:
                backend = RedisHandleBackend(client, prefix="contract", clock=trio.current_time)
            store = HandleStore(
                "cart", create_tool="create_cart", limits=HandleLimits(**limits), backend=backend
            )
            store.kind = kind  # type: ignore[attr-defined]
            opened.append(store)
            return store

        yield build
        for store in opened:
            await store.aclose()
        nursery.cancel_scope.cancel()


async def test_round_trip(autojump_clock: trio.testing.MockClock, make: Any) -> None:
    store = await make()
    handle = await store.create(ctx(ALICE), {"items": []})
    assert handle.startswith("cart_")
    assert len(handle) == len("cart_") + 32  # 192 random bits
    cart = await store.get(ctx(ALICE), handle)
    assert cart == {"items": []}
    cart["items"].append("x")  # a copy: nothing changes until update
    assert await store.get(ctx(ALICE), handle) == {"items": []}
    await store.update(ctx(ALICE), handle, {"items": ["x", "ü"]})
    assert await store.get(ctx(ALICE), handle) == {"items": ["x", "ü"]}
    await store.delete(ctx(ALICE), handle)
    with pytest.raises(HandleNotFound):
        await store.get(ctx(ALICE), handle)
    await store.delete(ctx(ALICE), handle, missing_ok=True)
    stats = store.statistics()
    assert (stats.created, stats.deleted, stats.not_found, stats.handles) == (1, 1, 1, 0)


async def test_unknown_expired_and_foreign_handles_answer_alike(
    autojump_clock: trio.testing.MockClock, make: Any
) -> None:
    store = await make(idle_timeout=10)
    mine = await store.create(ctx(ALICE), {"n": 1})
    anonymous = await store.create(ctx(None), {"n": 2})
    gone = await store.create(ctx(ALICE), {"n": 3})
    await store.delete(ctx(ALICE), gone)
    texts = set()
    for who, handle in [
        (BOB, mine),  # another principal's
        (None, mine),  # an anonymous caller with a principal's handle
        (ALICE, anonymous),  # a principal with an anonymous handle
        (ALICE, gone),  # deleted
        (ALICE, "cart_" + "A" * 32),  # well-formed, never minted
        (ALICE, "cart_short"),
        (ALICE, 42),
        (ALICE, None),
        (ALICE, "notes_" + mine[5:]),
    ]:
        with pytest.raises(HandleNotFound) as caught:
            await store.get(ctx(who), handle)
        texts.add(str(caught.value))
        with pytest.raises(HandleNotFound):
            await store.update(ctx(who), handle, {"stolen": True})
        with pytest.raises(HandleNotFound):
            await store.delete(ctx(who), handle)
    await trio.sleep(10)
    with pytest.raises(HandleNotFound) as caught:
        await store.get(ctx(ALICE), mine)
    texts.add(str(caught.value))
    assert texts == {
        "cart handle expired or unknown; call create_cart again and use the handle it returns"
    }
    assert store.statistics().expired == 2  # mine and the anonymous one, both idle


async def test_a_foreign_lookup_does_not_keep_a_handle_alive(
    autojump_clock: trio.testing.MockClock, make: Any
) -> None:
    store = await make(idle_timeout=10)
    handle = await store.create(ctx(ALICE), {"n": 1})
    await trio.sleep(6)
    with pytest.raises(HandleNotFound):
        await store.get(ctx(BOB), handle)
    await trio.sleep(4)
    with pytest.raises(HandleNotFound):
        await store.get(ctx(ALICE), handle)


async def test_idle_expiry_and_use_renews(
    autojump_clock: trio.testing.MockClock, make: Any
) -> None:
    store = await make(idle_timeout=10, max_lifetime=None)
    handle = await store.create(ctx(ALICE), {"n": 1})
    for _ in range(5):
        await trio.sleep(9)
        assert await store.get(ctx(ALICE), handle) == {"n": 1}
    await trio.sleep(5)
    await store.update(ctx(ALICE), handle, {"n": 2})  # an update renews too
    await trio.sleep(9.5)
    assert await store.get(ctx(ALICE), handle) == {"n": 2}
    await trio.sleep(10)
    with pytest.raises(HandleNotFound):
        await store.get(ctx(ALICE), handle)
    assert store.statistics().expired == 1


async def test_max_lifetime_however_used(autojump_clock: trio.testing.MockClock, make: Any) -> None:
    store = await make(idle_timeout=10, max_lifetime=30)
    handle = await store.create(ctx(None), {"n": 1})
    for _ in range(3):
        await trio.sleep(9.5)
        assert await store.get(ctx(None), handle) == {"n": 1}
    await trio.sleep(1.5)  # 30 s after creation
    with pytest.raises(HandleNotFound):
        await store.get(ctx(None), handle)


async def test_purge_expired(autojump_clock: trio.testing.MockClock, make: Any) -> None:
    store = await make(idle_timeout=10)
    for who in (ALICE, BOB, None):
        await store.create(ctx(who), {})
    await trio.sleep(5)
    keep = await store.create(ctx(ALICE), {})
    assert await store.purge_expired() == 0
    await trio.sleep(5)
    assert await store.purge_expired() == 3
    assert store.statistics().handles == 1
    assert store.statistics().expired == 3
    assert await store.get(ctx(ALICE), keep) == {}


@pytest.mark.parametrize(
    ("policy", "victim"),
    [(HandlePolicy.LEAST_RECENTLY_USED, 1), (HandlePolicy.OLDEST, 0), (HandlePolicy.REJECT, None)],
)
async def test_per_principal_cap(
    autojump_clock: trio.testing.MockClock, make: Any, policy: HandlePolicy, victim: int | None
) -> None:
    store = await make(max_per_principal=2, max_handles=10, policy=policy)
    first = await store.create(ctx(ALICE), {"n": 0})
    await trio.sleep(1)
    second = await store.create(ctx(ALICE), {"n": 1})
    await trio.sleep(1)
    await store.get(ctx(ALICE), first)  # first is now the most recently used
    others = [await store.create(ctx(BOB), {}), await store.create(ctx(None), {})]
    await trio.sleep(1)
    if victim is None:
        with pytest.raises(HandleLimitReached, match="too many open carts"):
            await store.create(ctx(ALICE), {"n": 2})
        assert store.statistics().refused == 1
        live = [first, second]
    else:
        third = await store.create(ctx(ALICE), {"n": 2})
        assert store.statistics().evicted == 1
        live = [[first, second][1 - victim], third]
        with pytest.raises(HandleNotFound):
            await store.get(ctx(ALICE), [first, second][victim])
    for handle in live:
        await store.get(ctx(ALICE), handle)
    # Bob's and the anonymous handle were never in Alice's way.
    await store.get(ctx(BOB), others[0])
    await store.get(ctx(None), others[1])


@pytest.mark.parametrize("policy", list(HandlePolicy))
async def test_global_cap(
    autojump_clock: trio.testing.MockClock, make: Any, policy: HandlePolicy
) -> None:
    store = await make(max_per_principal=5, max_handles=3, policy=policy)
    made = []
    for who in (ALICE, BOB, None):
        made.append(await store.create(ctx(who), {"who": who}))
        await trio.sleep(1)
    await store.get(ctx(ALICE), made[0])
    if policy is HandlePolicy.REJECT:
        with pytest.raises(HandleLimitReached):
            await store.create(ctx("carol"), {})
        return
    await store.create(ctx("carol"), {})
    gone = made[1] if policy is HandlePolicy.LEAST_RECENTLY_USED else made[0]
    owner = BOB if gone == made[1] else ALICE
    with pytest.raises(HandleNotFound):
        await store.get(ctx(owner), gone)
    assert store.statistics().handles == 3


@pytest.mark.parametrize("policy", [HandlePolicy.REJECT, HandlePolicy.LEAST_RECENTLY_USED])
async def test_caps_exact_under_concurrency_and_across_instances(
    make: Any, policy: HandlePolicy
) -> None:
    limits = {"max_per_principal": 3, "max_handles": 5, "policy": policy}
    first = await make(**limits)
    second = await make(shared_with=first, **limits)  # another instance, the same records
    made: list[tuple[str, str | None]] = []
    refused = 0

    async def create(store: HandleStore, who: str | None) -> None:
        nonlocal refused
        try:
            made.append((await store.create(ctx(who), {"who": who}), who))
        except HandleLimitReached:
            refused += 1

    async with trio.open_nursery() as nursery:
        for n in range(24):
            nursery.start_soon(create, (first, second)[n % 2], (ALICE, BOB, None)[n % 3])
    live = []
    for handle, who in made:
        try:
            await first.get(ctx(who), handle)
            live.append(who)
        except HandleNotFound:
            pass
    assert len(live) <= 5
    assert live.count(ALICE) <= 3
    assert live.count(BOB) <= 3
    if policy is HandlePolicy.REJECT:
        assert len(live) == len(made) == 5
        assert refused == 19
    else:
        assert len(made) == 24
        assert len(live) == 5
        evicted = first.statistics().evicted + second.statistics().evicted
        assert evicted == 24 - 5


async def test_value_bounds(autojump_clock: trio.testing.MockClock, make: Any) -> None:
    store = await make(max_value_bytes=100)
    handle = await store.create(ctx(ALICE), {"s": "x" * 90})
    with pytest.raises(HandleError, match="too large") as caught:
        await store.update(ctx(ALICE), handle, {"s": "x" * 100})
    assert not isinstance(caught.value, HandleNotFound)
    with pytest.raises(HandleError, match="too large"):
        await store.create(ctx(ALICE), ["é" * 60])  # 120 bytes as UTF-8
    with pytest.raises(TypeError, match="JSON-serializable"):
        await store.create(ctx(ALICE), {"s": {1, 2}})
    with pytest.raises(TypeError, match="JSON-serializable"):
        await store.create(ctx(ALICE), float("nan"))
    assert await store.get(ctx(ALICE), handle) == {"s": "x" * 90}
    assert store.statistics().refused == 2


async def test_records_hold_no_handle(
    autojump_clock: trio.testing.MockClock, make: Any, tmp_path: Path
) -> None:
    store = await make()
    handle = await store.create(ctx(ALICE), {"n": 1})
    token = handle[5:].encode()
    if store.kind == "sqlite":
        assert token not in (tmp_path / "handles.db").read_bytes()
        assert token not in (tmp_path / "handles.db-wal").read_bytes()
    elif store.kind == "redis":
        client = store.backend._client
        keys = await client.keys("*")
        assert keys
        assert not any(token in key for key in keys)
        record = next(key for key in keys if b":r:" in key)
        assert 0 < await client.pttl(record) <= (3600 + 1) * 1000  # the safety net's TTL
        assert json.loads((await client.hget(record, "v")) or b"null") == {"n": 1}


async def test_sqlite_handles_survive_a_restart(tmp_path: Path) -> None:
    limits = HandleLimits()
    backend = SqliteHandleBackend(tmp_path / "h.db")
    store = HandleStore("cart", limits=limits, backend=backend)
    handle = await store.create(ctx(ALICE), {"n": 1})
    await store.aclose()
    again = HandleStore("cart", limits=limits, backend=SqliteHandleBackend(tmp_path / "h.db"))
    assert await again.get(ctx(ALICE), handle) == {"n": 1}
    with pytest.raises(HandleNotFound):
        await again.get(ctx(BOB), handle)
    await again.aclose()
