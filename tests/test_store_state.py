"""A session's mutable state (subscriptions, log level): bounded, and stored as changes."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from _harness import live_stats, set_log_level
from test_manager import INFO, drain, open_session
from trio_mcp_sessions import (
    BoundedSessionManager,
    InMemorySessionStore,
    McpServer,
    SqliteSessionStore,
)
from trio_mcp_sessions._protocol._jsonrpc import Request

if TYPE_CHECKING:
    from pathlib import Path


class Counting:
    """A real store, with the calls the manager makes to it counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return await method(*args, **kwargs)

        return call

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for called, args, kwargs in self.calls if called == name]


async def request(
    manager: BoundedSessionManager, session_id: str, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    stream = await manager.create_stream(session_id, [Request(9, method, params)], INFO, "json")
    (answer,) = await drain(stream)
    return json.loads(answer)  # type: ignore[no-any-return]


async def test_subscriptions_are_capped_per_session_and_by_uri_length() -> None:
    server = McpServer("caps", max_subscriptions=3, max_uri_length=100)
    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        for n in range(3):
            reply = await request(manager, session_id, "resources/subscribe", {"uri": f"r://{n}"})
            assert reply["result"] == {}
        # The same URI again is no new subscription; a fourth one is refused.
        assert (await request(manager, session_id, "resources/subscribe", {"uri": "r://0"}))[
            "result"
        ] == {}
        refused = await request(manager, session_id, "resources/subscribe", {"uri": "r://3"})
        assert refused["error"]["code"] == -32602
        assert "most subscriptions allowed (3)" in refused["error"]["message"]
        assert refused["error"]["data"] == {"max_subscriptions": 3}
        too_long = await request(
            manager, session_id, "resources/subscribe", {"uri": "r://" + "x" * 1_000_000}
        )
        assert too_long["error"]["code"] == -32602
        assert too_long["error"]["data"] == {"max_uri_length": 100}
        assert manager.statistics().subscriptions == 3
        # Unsubscribing makes room again.
        await request(manager, session_id, "resources/unsubscribe", {"uri": "r://1"})
        reply = await request(manager, session_id, "resources/subscribe", {"uri": "r://3"})
        assert reply["result"] == {}
        assert live_stats(manager, session_id).subscriptions == {"r://0", "r://2", "r://3"}


async def test_set_level_and_subscribe_through_a_session_reach_the_stored_record(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server API changes state through the session's methods, which save the change."""
    store = InMemorySessionStore()
    async with BoundedSessionManager(McpServer("state"), session_store=store) as manager:
        session_id = await open_session(manager)
        await trio.testing.wait_all_tasks_blocked()  # the first save
        first = await store.load(session_id)
        assert first is not None
        assert (first.log_level, set(first.subscriptions)) == (None, set())

        async def stored() -> tuple[str | None, set[str]]:
            await trio.testing.wait_all_tasks_blocked()  # the state write runs beside
            record = await store.load(session_id)
            assert record is not None
            return record.log_level, set(record.subscriptions)

        await set_log_level(manager, session_id, "warning")
        assert await stored() == ("warning", set())
        for uri in ("r://a", "r://b"):
            reply = await request(manager, session_id, "resources/subscribe", {"uri": uri})
            assert reply["result"] == {}
        assert await stored() == ("warning", {"r://a", "r://b"})
        await request(manager, session_id, "resources/unsubscribe", {"uri": "r://a"})
        await set_log_level(manager, session_id, "error")
        assert await stored() == ("error", {"r://b"})
        # The live session says the same.
        live = live_stats(manager, session_id)
        assert (live.log_level, live.subscriptions) == ("error", frozenset({"r://b"}))


@pytest.mark.parametrize("options", [{"max_subscriptions": 0}, {"max_uri_length": 0}])
def test_caps_must_be_positive(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        McpServer("bad", **options)


async def test_a_subscribe_stores_the_change_not_the_record(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    server = McpServer("incremental", max_uri_length=2048)
    async with SqliteSessionStore(path) as real:
        store = Counting(real)
        async with BoundedSessionManager(server, session_store=store) as manager:
            session_id = await open_session(manager)
            assert len(store.named("save")) == 1  # initialize
            for n in range(50):
                uri = f"r://{n:02d}/" + "u" * 2000
                await request(manager, session_id, "resources/subscribe", {"uri": uri})
            await request(
                manager, session_id, "resources/unsubscribe", {"uri": f"r://00/{'u' * 2000}"}
            )
            await request(manager, session_id, "logging/setLevel", {"level": "debug"})
            with trio.fail_after(5):  # the writes run beside the requests
                while True:
                    stored = await real.load(session_id)
                    assert stored is not None
                    if stored.log_level == "debug" and len(stored.subscriptions) == 49:
                        break
                    await trio.sleep(0.01)
            assert len(store.named("save")) == 1  # never saved whole again
            updates = store.named("update_state")
            assert 1 <= len(updates) <= 52  # changes that arrive during a write go together
            # Each carries what changed since the last write, never the whole set.
            sent = [uri for _, kw in updates for uri in kw["subscribe"]]
            assert len(sent) == len(set(sent)) <= 50
            assert updates[-1][1]["log_level"] == "debug"
            wal = path.with_name(path.name + "-wal")
            assert wal.stat().st_size < 2 << 20  # 751 MB at 50 with whole-record saves of 1 MB
            with sqlite3.connect(path) as conn:
                (record,) = conn.execute("SELECT record FROM mcp_session_records").fetchone()
            assert json.loads(record)["subscriptions"] == []  # the JSON as first saved
        loaded = await real.load(session_id)
        assert loaded is not None
        assert loaded.log_level == "debug"
        assert len(loaded.subscriptions) == 49
        assert loaded.subscriptions[0].startswith("r://01/")
