"""The handle store's parts: limits and their text, hostile handles, the sweep, failing backends."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from _peers import FakePeer
from trio_mcp_sessions import (
    Context,
    HandleError,
    HandleLimits,
    HandleNotFound,
    HandlePolicy,
    HandleStore,
    McpServer,
    RedisHandleBackend,
    SqliteHandleBackend,
)
from trio_mcp_sessions._handles._limits import handle_key, mint_handle

if TYPE_CHECKING:
    from pathlib import Path


def ctx(principal: str | None = "alice") -> Context:
    return Context(FakePeer(), 1, None, principal=principal)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_handles", 0, ValueError),
        ("max_handles", 1.5, TypeError),
        ("max_per_principal", True, TypeError),
        ("max_value_bytes", -1, ValueError),
        ("idle_timeout", 0, ValueError),
        ("idle_timeout", float("inf"), ValueError),
        ("max_lifetime", float("nan"), ValueError),
        ("max_lifetime", "1h", TypeError),
        ("sweep_interval", None, TypeError),
        ("policy", "reject", TypeError),
    ],
)
def test_limits_are_checked(field: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=field if field != "policy" else "policy"):
        HandleLimits(**{field: value})


def test_store_names_are_checked() -> None:
    for name in ("", "Cart", "cart_x", "9cart", "a" * 17):
        with pytest.raises(ValueError, match="prefix"):
            HandleStore(name)


def test_the_retention_note() -> None:
    assert HandleStore("cart").retention_note() == (
        "Carts expire after 1 hour without use or 1 day after creation."
        " At most 64 open per user; the least recently used goes beyond that."
    )
    limits = HandleLimits(
        idle_timeout=None, max_lifetime=90, max_per_principal=1, policy=HandlePolicy.REJECT
    )
    assert HandleStore("basket", limits=limits).retention_note() == (
        "Baskets expire 90 seconds after creation."
        " At most 1 open per user; delete one to make room."
    )
    limits = HandleLimits(idle_timeout=None, max_lifetime=None, policy=HandlePolicy.OLDEST)
    assert HandleStore("tab", limits=limits).retention_note() == (
        "Tabs do not expire. At most 64 open per user; the oldest goes beyond that."
    )


def test_handles_are_opaque_and_unguessable() -> None:
    handles = {mint_handle("cart") for _ in range(1000)}
    assert len(handles) == 1000
    for handle in handles:
        assert handle_key("cart", handle) is not None
        assert handle_key("tab", handle) is None
    # 32 URL-safe characters: 192 bits, over the 128 we promise.
    assert {len(h) for h in handles} == {len("cart_") + 32}


@given(
    handle=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_-0123456789", min_size=37, max_size=37),
        st.builds(lambda s: "cart_" + s, st.text(min_size=32, max_size=32)),
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
)
def test_any_hostile_handle_is_just_unknown(handle: Any) -> None:
    async def main() -> None:
        store = HandleStore("cart", create_tool="create_cart")
        await store.create(ctx(), {"n": 1})
        for call in (
            store.get(ctx(), handle),
            store.update(ctx(), handle, {}),
            store.delete(ctx(), handle),
        ):
            with pytest.raises(HandleNotFound, match="call create_cart again"):
                await call

    trio.run(main)


async def test_the_sweep_frees_what_nobody_asks_for(autojump_clock: trio.testing.MockClock) -> None:
    store = HandleStore("cart", limits=HandleLimits(idle_timeout=100, sweep_interval=30))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        for who in ("alice", "bob", None):
            await store.create(ctx(who), {})
        await trio.sleep(119)
        assert store.statistics().handles == 3  # swept at 30, 60, 90: nothing due yet
        await trio.sleep(2)  # the sweep at 120
        stats = store.statistics()
        assert (stats.handles, stats.expired) == (0, 3)
        nursery.cancel_scope.cancel()


async def test_tools_see_the_principal_in_both_eras() -> None:
    server = McpServer("who")

    @server.tool()
    async def whoami(ctx: Context) -> str:
        return str(ctx.principal)

    assert Context(FakePeer(), 1, None).principal is None
    assert ctx("carol").principal == "carol"


# coredis leaves a failed connection's anyio streams to the garbage collector
# (as tests/test_store_redis.py notes): collect them here, under this filter.
@pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_failing_backend_is_a_tool_error_that_names_no_details(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        with caplog.at_level(logging.WARNING, logger="trio_mcp_sessions.handles"):
            await _fail_every_call(kind, tmp_path)
        assert caplog.text.count("handle store 'cart'") == 4
    finally:
        gc.collect()


async def _fail_every_call(kind: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        backend: Any
        if kind == "sqlite":
            backend = SqliteHandleBackend(tmp_path / "missing-dir" / "h.db")
        else:
            import coredis

            from _redis_server import _free_port

            # Nothing listens there: every call is refused at once.
            client = coredis.Redis(
                host="127.0.0.1", port=_free_port(), decode_responses=False, connect_timeout=1.0
            )
            await stack.enter_async_context(client)
            backend = RedisHandleBackend(client)
        store = HandleStore("cart", backend=backend)
        handle = mint_handle("cart")
        for call in (
            store.create(ctx(), {"n": 1}),
            store.get(ctx(), handle),
            store.update(ctx(), handle, {}),
            store.delete(ctx(), handle),
        ):
            with pytest.raises(HandleError) as caught:
                await call
            assert str(caught.value) == "the cart store is unavailable; try again in a moment"
            assert not isinstance(caught.value, HandleNotFound)
        assert store.statistics().store_errors == 4
        await store.aclose()
