"""Bounded sessions: limits, eviction, rate limits, close reasons, over HTTP and not."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from _harness import manager_of
from conftest import INIT_HEADERS, StartServer, initialize_body
from test_manager import INFO, call, drain, make_server, open_session
from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    EvictionPolicy,
    InMemoryEventStore,
    McpError,
    RateLimit,
    RateLimited,
    RequestInfo,
    ServerOptions,
    SessionLimits,
    StreamableHTTPApp,
    TooManySessions,
)
from trio_mcp_sessions._ratelimit import SlidingWindow, SlidingWindowLimiter
from trio_mcp_sessions.testing import McpTestClient, open_test_client

# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_creations": 0, "window": 60}, ValueError, "pass no rate limit instead"),
        ({"max_creations": 5, "window": 0}, ValueError, "positive number of seconds"),
        ({"max_creations": 5, "window": math.inf}, ValueError, "positive number of seconds"),
        ({"max_creations": 1.5, "window": 60}, TypeError, "int"),
    ],
)
def test_invalid_rate_limits(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RateLimit(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_sessions": 0}, ValueError, "at least 1"),
        ({"eviction": "lru"}, ValueError, "eviction must be one of"),
        ({"max_lifetime": 0}, ValueError, "positive"),
        ({"rate_limit": (10, 60)}, TypeError, "RateLimit"),
        ({"eviction_wait": -1}, ValueError, "positive"),
    ],
)
def test_invalid_session_limits(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SessionLimits(**kwargs)


def test_defaults_keep_a_server_from_being_wedged() -> None:
    limits = SessionLimits()
    assert limits.max_sessions < math.inf
    assert limits.idle_timeout < math.inf
    assert limits.eviction is EvictionPolicy.LEAST_RECENTLY_ACTIVE
    assert SessionLimits(eviction="oldest").eviction is EvictionPolicy.OLDEST  # type: ignore[arg-type]


# -- sliding windows (sans-IO) ---------------------------------------------------------


def test_window_is_exact_to_the_second() -> None:
    window = SlidingWindow(RateLimit(2, 10))
    window.record(100.0)
    window.record(103.0)
    assert window.retry_after(103.0) == 7.0
    assert window.retry_after(109.999) == pytest.approx(0.001)
    assert window.retry_after(110.0) == 0.0  # the creation at 100 leaves at exactly 110
    window.record(110.0)
    assert window.retry_after(112.0) == 1.0


def test_per_client_keys_are_separate_and_bounded() -> None:
    limiter = SlidingWindowLimiter(None, RateLimit(1, 60), max_keys=3)
    assert limiter.acquire("a", 0.0)[0] == 0
    assert limiter.acquire("a", 1.0)[0] == 59.0
    assert limiter.acquire("b", 1.0)[0] == 0
    for n in range(10):
        limiter.acquire(f"flood-{n}", 2.0)
    assert limiter.tracked_keys() <= 3
    # Keys whose window emptied are forgotten as time passes.
    limiter.acquire("late", 500.0)
    assert limiter.tracked_keys() == 1


def test_global_limit_and_refunds() -> None:
    limiter = SlidingWindowLimiter(RateLimit(2, 10), RateLimit(5, 10))
    wait, first = limiter.acquire("a", 0.0)
    assert wait == 0
    assert limiter.acquire("b", 0.0)[0] == 0
    assert limiter.acquire("c", 0.0)[0] == 10.0  # the global window is full
    limiter.refund(first)
    assert limiter.acquire("c", 0.0)[0] == 0


# -- eviction policies -----------------------------------------------------------------


async def test_least_recently_active_idle_session_is_evicted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, counters = make_server()
    limits = SessionLimits(max_sessions=3)
    async with BoundedSessionManager(server, limits=limits) as manager:
        busy = await open_session(manager)
        old_idle = await open_session(manager)
        recent = await open_session(manager)
        stream = await manager.create_stream(busy, [call(2, "slow", seconds=1e6)], INFO, "sse")
        await trio.sleep(1)
        await manager.accept_messages(recent, [], INFO)  # nothing, but not activity either
        newcomer = await open_session(manager)
        assert manager.get_session(old_idle) is None
        assert manager.get_session(busy) is not None
        assert counters["cancelled"] == 0
        assert manager.statistics().evicted == 1
        # Busy sessions are never victims: with every other session busy, refuse.
        streams = [
            await manager.create_stream(sid, [call(3, "slow", seconds=1e6)], INFO, "sse")
            for sid in (recent, newcomer)
        ]
        with pytest.raises(TooManySessions):
            await open_session(manager)
        assert manager.statistics().refused_by_reason == {"capacity": 1}
        for s in [stream, *streams]:
            s.detach()


async def test_oldest_policy_evicts_even_a_busy_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, counters = make_server()
    limits = SessionLimits(max_sessions=2, eviction=EvictionPolicy.OLDEST)
    async with BoundedSessionManager(server, limits=limits) as manager:
        oldest = await open_session(manager)
        second = await open_session(manager)
        stream = await manager.create_stream(oldest, [call(2, "slow", seconds=1e6)], INFO, "sse")
        await trio.testing.wait_all_tasks_blocked()
        await open_session(manager)
        assert await drain(stream) == []  # its stream ended, no response
        assert counters["cancelled"] == 1
        assert manager.get_session(oldest) is None
        assert manager.get_session(second) is not None
        assert manager.statistics().closed_by_reason == {"evicted": 1}


async def test_reject_policy_never_evicts(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    limits = SessionLimits(max_sessions=1, eviction=EvictionPolicy.REJECT)
    async with BoundedSessionManager(server, limits=limits) as manager:
        first = await open_session(manager)
        with pytest.raises(TooManySessions):
            await open_session(manager)
        assert manager.get_session(first) is not None


async def test_evicted_sessions_lose_their_stored_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server, limits=SessionLimits(max_sessions=1)) as manager:
        victim = await open_session(manager)
        await drain(await manager.create_stream(victim, [call(2, "chatty")], INFO, "sse"))
        store = manager.event_store
        assert isinstance(store, InMemoryEventStore)
        assert store.statistics()[1] == 3
        await open_session(manager)
        assert store.statistics()[1] == 0


# -- rate limits in the manager --------------------------------------------------------


async def test_rate_limit_refuses_before_evicting_and_refunds_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()

    @server.on_initialize
    def refuse_some(client: Any, is_restored: bool) -> None:
        if client.client_info.get("name") == "bad":
            raise McpError(-32602, "bad client")

    limits = SessionLimits(
        max_sessions=1, rate_limit_per_client=RateLimit(2, 60), rate_limit=RateLimit(3, 60)
    )
    async with BoundedSessionManager(server, limits=limits) as manager:
        from trio_mcp_sessions._protocol._jsonrpc import Request
        from trio_mcp_sessions._protocol._lifecycle import parse_initialize

        bad = Request(
            1, "initialize", {"protocolVersion": "2025-11-25", "clientInfo": {"name": "bad"}}
        )
        for _ in range(5):  # failed initializes give their tokens back
            sid = await manager.create_session(INFO)
            await manager.initialize_session(sid, bad, parse_initialize(bad), INFO)
        first = await open_session(manager)
        await trio.sleep(20)
        await open_session(manager)  # evicts `first`
        assert manager.get_session(first) is None
        with pytest.raises(RateLimited) as refused:
            await open_session(manager)
        assert refused.value.retry_after == 40  # the first creation leaves the window at t=60
        assert manager.statistics().evicted == 1  # no eviction for a rate-limited request
        other = RequestInfo(client_address="192.0.2.7")
        sid = await manager.create_session(other)  # another client has its own budget ...
        await manager.close_session(sid, CloseReason.DELETED)
        with pytest.raises(RateLimited):
            await manager.create_session(RequestInfo(client_address="192.0.2.8"))  # ... not global
        stats = manager.statistics()
        assert stats.refused_by_reason == {"rate_limit": 2}


async def test_rate_limit_key_can_be_the_principal(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    limits = SessionLimits(
        rate_limit_per_client=RateLimit(1, 60),
        rate_limit_key=lambda info: info.principal or info.client_address,
    )
    async with BoundedSessionManager(server, limits=limits) as manager:
        alice = RequestInfo(client_address="10.1.1.1", principal="alice")
        bob = RequestInfo(client_address="10.1.1.1", principal="bob")
        await manager.create_session(alice)
        await manager.create_session(bob)  # same address, different principal
        with pytest.raises(RateLimited):
            await manager.create_session(RequestInfo(client_address="10.9.9.9", principal="alice"))


# -- close reasons ---------------------------------------------------------------------


async def test_every_close_reason(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()

    @server.on_initialize
    def refuse_some(client: Any, is_restored: bool) -> None:
        if client.client_info.get("name") == "bad":
            raise McpError(-32602, "bad client")

    reasons: list[CloseReason] = []
    limits = SessionLimits(max_sessions=2, idle_timeout=30, init_timeout=5, max_lifetime=100)
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(
            BoundedSessionManager(
                server,
                # The lifetime, not the handler's deadline, ends the busy session.
                options=ServerOptions(request_timeout=200),
                limits=limits,
                on_session_closed=lambda sid, r: reasons.append(r),
            ).run
        )
        deleted = await open_session(manager)
        await manager.close_session(deleted, CloseReason.DELETED)
        await open_session(manager, initialized=False)
        await trio.sleep(5)  # init_timeout
        await trio.testing.wait_all_tasks_blocked()
        idle = await open_session(manager)
        await trio.sleep(30)  # idle
        await trio.testing.wait_all_tasks_blocked()
        assert manager.get_session(idle) is None
        lifetime = await open_session(manager)
        stream = await manager.create_stream(lifetime, [call(2, "slow", seconds=1e6)], INFO, "sse")
        await trio.sleep(100)  # max_lifetime, busy or not
        await trio.testing.wait_all_tasks_blocked()
        assert await drain(stream) == []
        await open_session(manager)
        await open_session(manager)
        await open_session(manager)  # evicts the least recently active
        from trio_mcp_sessions._protocol._jsonrpc import Request
        from trio_mcp_sessions._protocol._lifecycle import parse_initialize

        bad = Request(
            1, "initialize", {"protocolVersion": "2025-11-25", "clientInfo": {"name": "bad"}}
        )
        sid = await manager.create_session(INFO)  # evicts another, then fails
        await manager.initialize_session(sid, bad, parse_initialize(bad), INFO)
        await manager.aclose()
    assert [r.value for r in reasons] == [
        "deleted",
        "init_timeout",
        "idle",
        "max_lifetime",
        "evicted",
        "evicted",
        "error",
        "shutdown",
    ]
    stats = manager.statistics()
    assert stats.closed == 8
    assert stats.evicted == 2


# -- over real HTTP --------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(EvictionPolicy))
async def test_200_concurrent_initializes_never_exceed_the_cap(
    start_server: StartServer, policy: EvictionPolicy
) -> None:
    server, _ = make_server()
    samples: list[int] = []
    app: StreamableHTTPApp

    def admitted(session_id: str, info: RequestInfo) -> None:
        stats = manager_of(app).statistics()
        samples.append(stats.live_sessions)
        # A token handed over by an evicted session may belong to a creation
        # that has not run yet, so tokens can lead the table, never trail it.
        assert stats.live_sessions <= stats.slots_held <= 10

    app = StreamableHTTPApp(
        server,
        limits=SessionLimits(max_sessions=10, eviction=policy),
        on_session_created=admitted,
    )
    url = await start_server(app)
    statuses: list[int] = []
    session_ids: list[str] = []
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def initialize(n: int) -> None:
            r = await http.post(url, json=initialize_body(request_id=n), headers=INIT_HEADERS)
            statuses.append(r.status_code)
            if r.status_code == 200:
                session_ids.append(r.headers["mcp-session-id"])
            if r.status_code == 503:
                assert r.headers["retry-after"].isdigit()
                assert r.json()["error"]["code"] == -32000
                assert r.json()["id"] == n

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for n in range(200):
                    nursery.start_soon(initialize, n)
    assert len(statuses) == 200
    assert max(samples) <= 10
    stats = manager_of(app).statistics()
    assert stats.live_sessions <= 10
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) == stats.created
    assert statuses.count(503) == stats.refused_by_reason.get("capacity", 0)
    if policy is EvictionPolicy.REJECT:
        assert statuses.count(200) == 10
        assert stats.evicted == 0
    else:
        # Idle sessions make room; a 503 only when all ten were mid-initialize.
        assert statuses.count(200) > 100
        assert stats.evicted == stats.created - stats.live_sessions
    # Nothing leaked: close what is left, then every slot and event is gone.
    manager = manager_of(app)
    live = [sid for sid in session_ids if manager.get_session(sid) is not None]
    assert len(live) == stats.live_sessions  # every live session is one the test created
    for session_id in live:
        await manager.close_session(session_id, CloseReason.DELETED)
    assert manager.statistics().live_sessions == 0
    assert manager.statistics().slots_held == 0
    events = manager.event_store
    assert isinstance(events, InMemoryEventStore)
    assert events.statistics() == (0, 0, 0)


async def test_http_429_503_and_404_after_eviction(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    app = StreamableHTTPApp(
        server,
        limits=SessionLimits(max_sessions=1, rate_limit_per_client=RateLimit(2, 3600)),
    )
    async with open_test_client(app) as victim:
        await victim.initialize()
        other = McpTestClient(app)
        async with victim.open_get_stream() as stream:
            assert stream.status == 200
            # The victim holds a GET stream, so the default policy will not evict it: 503.
            refused = await other.post(initialize_body(request_id=7))
            assert refused.status == 503
            assert refused.headers["retry-after"] == "5"
            assert refused.json() == {
                "jsonrpc": "2.0",
                "id": 7,
                "error": {"code": -32000, "message": refused.json()["error"]["message"]},
            }
            assert "limit" in refused.json()["error"]["message"]
        # The client left and the app's response returned: the victim is idle now.
        assert manager_of(app).statistics().busy_sessions == 0
        second = await other.post(initialize_body())
        assert second.status == 200  # the idle victim made room
        gone = await victim.request("ping")
        assert gone.status == 404
        assert gone.json()["error"]["code"] == -32001
        limited = await other.post(initialize_body(request_id=9))
        assert limited.status == 429
        assert int(limited.headers["retry-after"]) == 3600  # the mock clock has not moved
        assert limited.json()["id"] == 9
        assert limited.json()["error"]["code"] == -32000
        assert "Too Many Requests" in limited.json()["error"]["message"]


async def test_metrics_endpoint(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    app = StreamableHTTPApp(server, metrics_path="/metrics", limits=SessionLimits(max_sessions=7))
    async with open_test_client(app) as client:
        await client.initialize()
        assert (await client.delete()).status == 200
        metrics = await client.send("GET", path="/metrics")
        assert metrics.status == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.body.decode()
        assert "mcp_sessions_live 0.0" in text
        assert "mcp_sessions_max 7.0" in text
        assert "mcp_sessions_created_total 1.0" in text
        assert 'mcp_sessions_closed_total{reason="deleted"} 1.0' in text
        assert "mcp_requests_in_flight 0.0" in text
        assert "mcp_readers_dropped_total 0.0" in text
        assert "mcp_connections_cut_total 0.0" in text
        assert (await client.send("POST", path="/metrics")).status == 405
        # What the transport refused is counted by status.
        r = await client.post(b"{")
        assert r.status == 400
        assert app.statistics().refused_by_status == {400: 1, 405: 1}
        text = (await client.send("GET", path="/metrics")).body.decode()
        assert 'mcp_http_refused_total{status="400"} 1.0' in text


async def test_shared_rate_limiter_falls_back_to_local_windows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_mcp_sessions import StoreUnavailable

    class Unreachable:
        global_limit: RateLimit | None = RateLimit(1, 60)
        per_client: RateLimit | None = None

        async def acquire(self, key: str | None) -> tuple[float, object]:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("redis down")

        async def refund(self, receipt: object) -> None:
            await trio.lowlevel.checkpoint()

    server, _ = make_server()
    async with BoundedSessionManager(server, rate_limiter=Unreachable()) as manager:
        await open_session(manager)  # degraded: the local window (1 per 60 s) applies
        with pytest.raises(RateLimited):
            await open_session(manager)
        assert manager.statistics().store_errors == 2
