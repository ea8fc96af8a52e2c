"""Real stores that fail: a SQLite file locked by another connection, a frozen redis-server.

Every store call takes one bounded path (``store_timeout``, counted, mapped
to StoreUnavailable) with a circuit breaker: while a store is known to be
down its calls fail at once instead of each paying the timeout.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from _harness import manager_of
from _redis_server import CLIENT_TIMEOUTS, RedisServer, redis_client
from conftest import INIT_HEADERS, StartServer, initialize_body
from test_manager import INFO
from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    Context,
    EventsPurged,
    InMemorySessionStore,
    McpServer,
    RedisEventStore,
    SessionNotFound,
    SessionRecord,
    SqliteEventStore,
    SqliteSessionStore,
    StoreUnavailable,
    StreamableHTTPApp,
)
from trio_mcp_sessions._protocol._jsonrpc import Request
from trio_mcp_sessions._protocol._lifecycle import parse_initialize
from trio_mcp_sessions._stores._guard import CircuitBreaker, CircuitState, StoreGuard

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import httpx

# -- the breaker, sans-IO -------------------------------------------------------------


def state(breaker: CircuitBreaker) -> CircuitState:
    """The state, read through a call (so mypy does not narrow it across calls)."""
    return breaker.state


def test_breaker_opens_after_the_threshold_and_probes_after_the_pause() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after=5.0)
    assert breaker.allow(0.0)
    breaker.failure(0.0)
    assert state(breaker) is CircuitState.CLOSED  # one failure is not an outage
    assert breaker.allow(0.1)
    breaker.failure(1.0)
    assert state(breaker) is CircuitState.OPEN
    assert breaker.opened == 1
    assert not breaker.allow(5.9)  # fails fast during the pause
    assert breaker.retry_in(5.9) == pytest.approx(0.1)
    assert breaker.allow(6.0)  # the probe
    assert state(breaker) is CircuitState.HALF_OPEN
    assert not breaker.allow(6.0)  # one probe at a time
    breaker.failure(7.0)  # the probe failed: another full pause
    assert state(breaker) is CircuitState.OPEN
    assert breaker.opened == 2
    assert not breaker.allow(11.9)
    assert breaker.allow(12.0)
    breaker.abandon()  # the probe was cancelled: the next call probes instead
    assert breaker.allow(12.0)
    breaker.success()
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.allow(12.0)


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after=1.0)
    for now in range(10):
        breaker.failure(now)
        breaker.success()
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.opened == 0


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"failure_threshold": 0}, ValueError),
        ({"failure_threshold": True}, TypeError),
        ({"reset_after": 0.0}, ValueError),
        ({"reset_after": float("inf")}, ValueError),
        ({"reset_after": float("nan")}, ValueError),
    ],
)
def test_breaker_refuses_bad_settings(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        CircuitBreaker(**options)


@given(
    threshold=st.integers(1, 5),
    pause=st.floats(0.1, 100.0),
    steps=st.lists(st.tuples(st.sampled_from("sfa"), st.floats(0.0, 50.0)), max_size=60),
)
def test_breaker_invariants(threshold: int, pause: float, steps: list[tuple[str, float]]) -> None:
    """Whatever happens: open means refused until the pause ends; one probe at a time."""
    breaker = CircuitBreaker(failure_threshold=threshold, reset_after=pause)
    now = 0.0
    for outcome, delta in steps:
        now += delta
        was_open = state(breaker) is CircuitState.OPEN
        wait = breaker.retry_in(now)
        allowed = breaker.allow(now)
        if was_open:
            assert allowed == (wait == 0.0)
        if not allowed:
            continue
        if state(breaker) is CircuitState.HALF_OPEN:
            assert not breaker.allow(now)  # a second probe is refused
        {"s": breaker.success, "a": breaker.abandon}.get(outcome, lambda: None)()
        if outcome == "f":
            before = breaker.consecutive_failures
            breaker.failure(now)
            if before + 1 >= threshold:
                assert state(breaker) is CircuitState.OPEN
        if outcome == "a" and state(breaker) is CircuitState.HALF_OPEN:
            assert breaker.allow(now)  # an abandoned probe frees the next one
            breaker.success()


async def test_guard_bounds_counts_and_fails_fast(autojump_clock: trio.testing.MockClock) -> None:
    guard = StoreGuard("events", timeout=2.0, failure_threshold=2, reset_after=5.0)

    async def hang() -> None:
        await trio.sleep_forever()

    async def answer() -> str:
        await trio.lowlevel.checkpoint()
        return "ok"

    async def purged() -> None:
        await trio.lowlevel.checkpoint()
        raise EventsPurged("gone")

    start = trio.current_time()
    for _ in range(2):
        with pytest.raises(StoreUnavailable, match="timed out"):
            await guard.call("append", hang)
    assert trio.current_time() - start == 4.0  # two timeouts, then the store is down
    with pytest.raises(StoreUnavailable, match="store is down"):
        await guard.call("append", answer)
    assert trio.current_time() - start == 4.0  # at once
    await trio.sleep(5.0)
    # Two calls at once after the pause: one probes, the other fails at once.
    results: list[str] = []

    async def probe(fn: Any) -> None:
        try:
            results.append(await guard.call("append", fn))
        except StoreUnavailable:
            results.append("refused")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, answer)
        nursery.start_soon(probe, answer)
    assert sorted(results) == ["ok", "refused"]
    # A store that answers with an error of its own is up.
    with pytest.raises(EventsPurged):
        await guard.call("replay", purged)
    stats = guard.statistics()
    assert (stats.state, stats.calls, stats.failures, stats.timeouts) == ("closed", 4, 2, 2)
    assert (stats.fast_failures, stats.opened) == (2, 1)
    assert guard.failures == 4


# -- over HTTP, with real stores ------------------------------------------------------


def chatty_server() -> McpServer:
    server = McpServer("store-faults")

    @server.tool()
    async def four(ctx: Context) -> str:
        """Three log messages and the result: four events on the request's stream."""
        for n in range(3):
            await ctx.info(f"step {n}")
        return "done"

    return server


async def open_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    r = await http.post(url, json=initialize_body(logging={}), headers=INIT_HEADERS)
    assert r.status_code == 200, r.text
    headers = {**INIT_HEADERS, "mcp-session-id": r.headers["mcp-session-id"]}
    r = await http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert r.status_code == 202
    r = await http.post(
        url,
        json={"jsonrpc": "2.0", "id": 0, "method": "logging/setLevel", "params": {"level": "info"}},
        headers=headers,
    )
    assert r.status_code == 200
    return headers


async def timed_tool_call(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    """Seconds one ``four`` call takes, every event received."""
    start = trio.current_time()
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "four"}}
    r = await http.post(url, json=body, headers=headers)
    assert r.status_code == 200
    assert r.text.count("data: {") == 4
    assert '"done"' in r.text
    return trio.current_time() - start


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    path = tmp_path / "state.db"
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        yield path, blocker
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


async def test_delete_is_never_undone_while_the_store_fails(
    start_server: StartServer,
    http: httpx.AsyncClient,
    locked: tuple[Path, sqlite3.Connection],
) -> None:
    path, blocker = locked
    server = chatty_server()
    async with SqliteSessionStore(path) as sessions:
        app = StreamableHTTPApp(
            server, session_store=sessions, reply_mode="json", store_timeout=0.5
        )
        url = await start_server(app)
        headers = await open_session(http, url)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with trio.fail_after(3):
            r = await http.delete(url, headers=headers)
        # Not deleted, and said so: the record would let a restart restore it.
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == -32000
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        r = await http.post(url, json=ping, headers=headers)
        assert r.status_code == 200  # the session is still there, as it was
        blocker.execute("ROLLBACK")
        await trio.sleep(5.0)  # store_probe_after, in case the circuit opened
        r = await http.delete(url, headers=headers)
        assert r.status_code == 200
    # A restart on the same file cannot bring the deleted session back.
    async with SqliteSessionStore(path) as sessions:
        assert await sessions.load(headers["mcp-session-id"]) is None
        restarted = await start_server(
            StreamableHTTPApp(server, session_store=sessions, reply_mode="json")
        )
        r = await http.post(restarted, json=ping, headers=headers)
        assert r.status_code == 404


async def test_sqlite_locked_store_costs_the_timeout_once(
    start_server: StartServer,
    http: httpx.AsyncClient,
    locked: tuple[Path, sqlite3.Connection],
) -> None:
    path, blocker = locked
    async with SqliteEventStore(path) as events, SqliteSessionStore(path) as sessions:
        app = StreamableHTTPApp(
            chatty_server(),
            event_store=events,
            session_store=sessions,
            store_timeout=1.0,
            metrics_path="/metrics",
        )
        url = await start_server(app)
        headers = await open_session(http, url)
        assert await timed_tool_call(http, url, headers) < 0.5  # healthy
        blocker.execute("BEGIN IMMEDIATE")
        # The busy wait follows store_timeout (not SQLite's 5 s), and after
        # two failures in a row the store counts as down: calls fail at once.
        first = await timed_tool_call(http, url, headers)
        assert 1.9 < first < 3.0
        second = await timed_tool_call(http, url, headers)
        assert second < 0.5
        stats = manager_of(app).statistics().stores["events"]
        assert (stats.state, stats.opened) == ("open", 1)
        assert stats.fast_failures >= 2
        metrics = (await http.get(url.replace("/mcp", "/metrics"))).text
        assert 'mcp_store_circuit_open{store="events"} 1.0' in metrics
        assert 'mcp_store_circuit_opened_total{store="events"} 1.0' in metrics
        assert 'mcp_store_timeouts_total{store="events"} 2.0' in metrics
        assert 'mcp_store_circuit_open{store="sessions"} 0.0' in metrics
        blocker.execute("ROLLBACK")
        await trio.sleep(5.0)  # the pause: the next append probes, and succeeds
        assert await timed_tool_call(http, url, headers) < 0.5
        stats = manager_of(app).statistics().stores["events"]
        assert stats.state == "closed"


async def test_frozen_redis_costs_the_timeout_once(
    start_server: StartServer,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    redis_server: RedisServer,
) -> None:
    client = await redis_client(nursery, redis_server)
    app = StreamableHTTPApp(chatty_server(), event_store=RedisEventStore(client))
    url = await start_server(app)
    headers = await open_session(http, url)
    assert await timed_tool_call(http, url, headers) < 0.5
    redis_server.pause()
    try:
        first = await timed_tool_call(http, url, headers)
        second = await timed_tool_call(http, url, headers)
    finally:
        redis_server.resume()
    timeout = CLIENT_TIMEOUTS["stream_timeout"]
    assert 2 * timeout - 0.1 < first < 2 * timeout + 1.0  # two timeouts, then the circuit opens
    assert second < 0.5
    await trio.sleep(5.0)
    assert await timed_tool_call(http, url, headers) < 0.5  # probed, closed again


async def test_first_get_backlog_replay_is_bounded(
    start_server: StartServer,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    redis_server: RedisServer,
) -> None:
    # A client whose own read timeout is long: only store_timeout bounds the replay.
    client = await redis_client(nursery, redis_server, stream_timeout=30.0)
    server = chatty_server()
    app = StreamableHTTPApp(
        server, event_store=RedisEventStore(client), reply_mode="json", store_timeout=0.5
    )
    url = await start_server(app)
    headers = await open_session(http, url)
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "four"}}
    r = await http.post(url, json=body, headers=headers)
    assert r.status_code == 200  # its logs went to the (not yet open) GET stream's backlog
    redis_server.pause()
    try:
        start = trio.current_time()
        with trio.fail_after(5):
            async with http.stream(
                "GET", url, headers={**headers, "accept": "text/event-stream"}
            ) as response:
                elapsed = trio.current_time() - start
                status = response.status_code
    finally:
        redis_server.resume()
    assert status in (200, 503)
    assert elapsed < 1.5


# -- a slow session store: DELETEs and saves that overlap ---------------------------------


class SlowSessionStore:
    """An in-memory session store whose deletes take 0.5 s, state updates 1.5 s."""

    def __init__(self) -> None:
        self._store = InMemorySessionStore()

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        await self._store.save(record, ttl=ttl)

    async def load(self, session_id: str) -> SessionRecord | None:
        return await self._store.load(session_id)

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        await self._store.touch(session_id, ttl=ttl, last_activity=last_activity)

    async def delete(self, session_id: str) -> None:
        await trio.sleep(0.5)
        await self._store.delete(session_id)

    async def update_state(self, session_id: str, **changes: Any) -> None:
        await trio.sleep(1.5)  # outlasts a DELETE that starts after it (within store_timeout)
        await self._store.update_state(session_id, **changes)


async def _stored_session(manager: BoundedSessionManager) -> str:
    session_id = await manager.create_session(INFO)
    request = Request(1, "initialize", initialize_body()["params"])
    await manager.initialize_session(session_id, request, parse_initialize(request), INFO)
    return session_id


async def test_concurrent_deletes_of_one_session_answer_once_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcomes: list[str] = []
    async with BoundedSessionManager(McpServer("deletes"), session_store=SlowSessionStore()) as m:
        session_id = await _stored_session(m)

        async def delete() -> None:
            try:
                await m.close_session(session_id, CloseReason.DELETED)
                outcomes.append("deleted")
            except SessionNotFound:
                outcomes.append("not found")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(delete)
            nursery.start_soon(delete)
    # Before: the second DELETE raised KeyError (a 500 over HTTP).
    assert sorted(outcomes) == ["deleted", "not found"]


async def test_a_session_closed_while_its_state_is_written_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = SlowSessionStore()
    async with BoundedSessionManager(McpServer("saves"), session_store=store) as m:
        session_id = await _stored_session(m)
        await trio.sleep(0.1)  # the first save is done
        assert await store.load(session_id) is not None
        await m.create_stream(
            session_id, [Request(2, "logging/setLevel", {"level": "debug"})], INFO, "json"
        )
        await trio.sleep(0.1)  # the state update is under way
        await m.close_session(session_id, CloseReason.DELETED)
        await trio.sleep(5)
        # The late state update brought nothing back: the record stays gone,
        # and the session with it.
        assert await store.load(session_id) is None
        stats = m.statistics()
        assert (stats.live_sessions, stats.slots_held, stats.store_errors) == (0, 0, 0)
        assert stats.tracked_records == 0  # no bookkeeping left behind by the late update
        assert m.session_statistics(session_id) is None
