"""Restore: two managers sharing stores behave like two instances (or a restart).

Everything runs on trio's mock clock with the in-memory stores; the SQLite and
Redis stores get the same treatment across real processes elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

if TYPE_CHECKING:
    import httpx

from _harness import live_stats
from conftest import INIT_HEADERS, StartServer, initialize_body
from test_manager import INFO, call, drain, make_server
from trio_mcp_sessions import (
    BoundedSessionManager,
    ClientInfo,
    CloseReason,
    EventStore,
    EvictionPolicy,
    InMemoryEventStore,
    InMemorySessionStore,
    McpServer,
    RateLimit,
    RateLimited,
    RequestInfo,
    RestoreOutcome,
    SessionLimits,
    SessionRecord,
    StoreUnavailable,
    StreamableHTTPApp,
    TooManySessions,
)
from trio_mcp_sessions._protocol._jsonrpc import Notification, Request, Response
from trio_mcp_sessions._protocol._lifecycle import parse_initialize


class FlakyStore:
    """Wraps a store; ``mode`` makes every call fail or hang (a dead backend)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode = "ok"

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.mode == "fail":
                await trio.lowlevel.checkpoint()
                raise StoreUnavailable("backend down")
            if self.mode == "hang":
                await trio.sleep_forever()
            return await method(*args, **kwargs)

        return call


async def open_on(
    manager: BoundedSessionManager, info: RequestInfo = INFO, **capabilities: Any
) -> str:
    session_id = await manager.create_session(info)
    request = Request(
        1,
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": capabilities,
            "clientInfo": {"name": "c"},
        },
    )
    reply = await manager.initialize_session(session_id, request, parse_initialize(request), info)
    assert isinstance(reply, Response)
    await manager.accept_messages(session_id, [Notification("notifications/initialized")], info)
    return session_id


def server_with_hook() -> tuple[McpServer, list[bool]]:
    server, _ = make_server()
    seen: list[bool] = []
    server.on_initialize(lambda client, restored: seen.append(restored))
    return server, seen


async def test_a_session_moves_to_another_instance(autojump_clock: trio.testing.MockClock) -> None:
    sessions = InMemorySessionStore()
    events: EventStore = InMemoryEventStore()
    server, seen = server_with_hook()
    clients: list[ClientInfo] = []
    server.on_initialize(lambda client, restored: clients.append(client))
    async with (
        BoundedSessionManager(server, session_store=sessions, event_store=events) as first,
        BoundedSessionManager(server, session_store=sessions, event_store=events) as second,
    ):
        session_id = await open_on(first, sampling={})
        await drain(
            await first.create_stream(
                session_id,
                [Request(2, "logging/setLevel", {"level": "warning"})],
                INFO,
                "sse",
            )
        )
        await drain(
            await first.create_stream(
                session_id,
                [Request(3, "resources/subscribe", {"uri": "res://x"})],
                INFO,
                "sse",
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        assert await second.restore_session(session_id, INFO) is RestoreOutcome.RESTORED
        restored = live_stats(second, session_id)
        assert restored.is_restored
        assert restored.log_level == "warning"
        assert restored.subscriptions == {"res://x"}
        assert restored.protocol_version == "2025-06-18"
        assert seen == [False, True]
        # The replayed initialize hands the application the stored client.
        assert clients[-1].has_capability("sampling")
        assert clients[-1].protocol_version == "2025-06-18"
        answers = await drain(
            await second.create_stream(session_id, [call(4, "chatty")], INFO, "sse")
        )
        assert b'"ok"' in answers[-1]
        assert b'"one"' not in b"".join(answers)  # info logs are below "warning"
        assert await second.restore_session(session_id, INFO) is RestoreOutcome.ALREADY_PRESENT
        assert second.statistics().restored == 1


async def test_restores_of_one_id_are_single_flight(autojump_clock: trio.testing.MockClock) -> None:
    sessions = InMemorySessionStore()
    server, seen = server_with_hook()
    outcomes: list[RestoreOutcome] = []
    async with (
        BoundedSessionManager(server, session_store=sessions) as first,
        BoundedSessionManager(server, session_store=sessions) as second,
    ):
        session_id = await open_on(first)
        async with trio.open_nursery() as nursery:
            for _ in range(10):

                async def restore() -> None:
                    outcomes.append(await second.restore_session(session_id, INFO))

                nursery.start_soon(restore)
    assert outcomes.count(RestoreOutcome.RESTORED) == 1
    assert outcomes.count(RestoreOutcome.ALREADY_PRESENT) == 9
    assert seen == [False, True]


async def test_another_credential_cannot_restore(autojump_clock: trio.testing.MockClock) -> None:
    sessions = InMemorySessionStore()
    server, _ = make_server()
    alice = RequestInfo(client_address="10.0.0.1", principal="alice")
    mallory = RequestInfo(client_address="10.0.0.1", principal="mallory")
    async with (
        BoundedSessionManager(server, session_store=sessions) as first,
        BoundedSessionManager(server, session_store=sessions) as second,
    ):
        session_id = await open_on(first, alice)
        assert await second.restore_session(session_id, mallory) is RestoreOutcome.NOT_FOUND
        assert await second.restore_session(session_id, INFO) is RestoreOutcome.NOT_FOUND
        assert await second.restore_session(session_id, alice) is RestoreOutcome.RESTORED


@pytest.mark.parametrize("reason", ["deleted", "idle", "evicted", "max_lifetime", "init_timeout"])
async def test_closed_sessions_are_never_resurrected(
    autojump_clock: trio.testing.MockClock, reason: str
) -> None:
    sessions = InMemorySessionStore()
    events = InMemoryEventStore()
    server, _ = make_server()
    limits = SessionLimits(
        max_sessions=1,
        idle_timeout=30,
        init_timeout=5,
        max_lifetime=1000 if reason != "max_lifetime" else 40,
    )
    async with (
        BoundedSessionManager(
            server, limits=limits, session_store=sessions, event_store=events
        ) as first,
        BoundedSessionManager(server, session_store=sessions, event_store=events) as second,
    ):
        if reason == "init_timeout":
            session_id = await first.create_session(INFO)
            request = Request(1, "initialize", {"protocolVersion": "2025-11-25"})
            await first.initialize_session(session_id, request, parse_initialize(request), INFO)
        else:
            session_id = await open_on(first)
        assert len(sessions) == 1
        if reason == "deleted":
            await first.close_session(session_id, CloseReason.DELETED)
        elif reason == "evicted":
            await open_on(first)
        else:
            stream = None
            if reason == "max_lifetime":
                stream = await first.create_stream(
                    session_id, [call(9, "slow", seconds=1e6)], INFO, "sse"
                )
            await trio.sleep(60)
            if stream is not None:
                stream.detach()
        await trio.testing.wait_all_tasks_blocked()
        assert first.get_session(session_id) is None
        assert first.statistics().closed_by_reason == {reason: 1}
        assert await sessions.load(session_id) is None
        assert await second.restore_session(session_id, INFO) is RestoreOutcome.NOT_FOUND
        assert events.statistics()[0] <= (1 if reason == "evicted" else 0)


async def test_shutdown_keeps_sessions_restorable(autojump_clock: trio.testing.MockClock) -> None:
    sessions = InMemorySessionStore()
    events = InMemoryEventStore()
    server, _ = make_server()
    async with BoundedSessionManager(server, session_store=sessions, event_store=events) as first:
        session_id = await open_on(first)
        stream = await first.create_stream(session_id, [call(2, "chatty")], INFO, "sse")
        assert stream.priming is None  # 2025-06-18: no priming event
        first_event = await stream.receive()
        stream.detach()  # the client's connection broke after the first log
        await trio.testing.wait_all_tasks_blocked()
    assert first.statistics().closed_by_reason == {"shutdown": 1}
    # "Restart": a new manager on the same stores.
    async with BoundedSessionManager(server, session_store=sessions, event_store=events) as again:
        assert await again.restore_session(session_id, INFO) is RestoreOutcome.RESTORED
        assert first_event.event_id is not None
        resumed = await again.resume(session_id, first_event.event_id)
        replayed = [e.data for e in resumed.replay]
        assert b'"two"' in replayed[0]
        assert b'"ok"' in replayed[1]
        resumed.detach()


async def test_a_restore_counts_against_the_cap(autojump_clock: trio.testing.MockClock) -> None:
    sessions = InMemorySessionStore()
    server, _ = make_server()
    limits = SessionLimits(max_sessions=1, eviction=EvictionPolicy.REJECT)
    async with (
        BoundedSessionManager(server, session_store=sessions) as first,
        BoundedSessionManager(server, session_store=sessions, limits=limits) as second,
    ):
        moving = await open_on(first)
        await open_on(second)
        with pytest.raises(TooManySessions):
            await second.restore_session(moving, INFO)
        assert second.statistics().refused_by_reason == {"capacity": 1}
        assert second.statistics().slots_held == 1


async def test_a_restore_is_not_charged_to_the_creation_rate_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a restart every client comes back at once: its session is no new creation."""
    sessions = InMemorySessionStore()
    server, _ = make_server()
    limits = SessionLimits(rate_limit_per_client=RateLimit(1, 60))
    async with (
        BoundedSessionManager(server, session_store=sessions, limits=limits) as first,
        BoundedSessionManager(server, session_store=sessions, limits=limits) as second,
    ):
        moving = [await open_on(first)]
        await trio.sleep(61)
        moving.append(await open_on(first))  # the client's budget (1 a minute) spent again
        await trio.testing.wait_all_tasks_blocked()
        for session_id in moving:
            assert await second.restore_session(session_id, INFO) is RestoreOutcome.RESTORED
        await open_on(second)  # its own budget is untouched by the two restores
        with pytest.raises(RateLimited):
            await open_on(second)
        stats = second.statistics()
        assert (stats.restored, stats.refused_by_reason) == (2, {"rate_limit": 1})


async def test_store_faults_degrade_and_recover(autojump_clock: trio.testing.MockClock) -> None:
    flaky = FlakyStore(InMemorySessionStore())
    server, _ = make_server()
    async with (
        BoundedSessionManager(server, session_store=flaky, store_timeout=2) as first,
        BoundedSessionManager(server, session_store=flaky, store_timeout=2) as second,
    ):
        for mode in ("fail", "hang"):
            flaky.mode = mode
            start = trio.current_time()
            degraded = await open_on(first)  # new sessions are still served
            assert trio.current_time() - start <= 2.0 + 1e-9
            with pytest.raises(StoreUnavailable):
                await second.restore_session(degraded, INFO)
            assert trio.current_time() - start <= 4.0 + 1e-9
        assert first.statistics().store_errors >= 2
        assert second.statistics().store_errors == 2
        # Two failures in a row: the store counts as down, calls fail at once.
        assert second.statistics().stores["sessions"].state == "open"
        flaky.mode = "ok"  # the backend is back: no restart needed
        start = trio.current_time()
        with pytest.raises(StoreUnavailable):
            await second.restore_session(degraded, INFO)
        assert trio.current_time() == start  # refused without waiting
        await trio.sleep(5.0)  # store_probe_after: the next call probes the store
        healthy = await open_on(first)
        assert await second.restore_session(healthy, INFO) is RestoreOutcome.RESTORED
        stats = second.statistics().stores["sessions"]
        assert (stats.state, stats.opened, stats.fast_failures) == ("closed", 1, 1)


async def test_http_restore_binding_and_store_outage(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    sessions = InMemorySessionStore()
    flaky = FlakyStore(sessions)
    server, _ = make_server()
    principal_header = "x-user"

    def principal(scope: Any) -> str | None:
        for name, value in scope["headers"]:
            if name == principal_header.encode():
                return str(value.decode())
        return None

    first = StreamableHTTPApp(
        server, session_store=sessions, principal=principal, reply_mode="json"
    )
    second = StreamableHTTPApp(
        server,
        session_store=flaky,
        principal=principal,
        reply_mode="json",
        store_timeout=0.5,
    )
    first_url = await start_server(first)
    second_url = await start_server(second)
    alice = {**INIT_HEADERS, principal_header: "alice"}
    r = await http.post(first_url, json=initialize_body(), headers=alice)
    session_id = r.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
    # Another credential: exactly what an unknown id gets, on both instances.
    for url in (first_url, second_url):
        r = await http.post(
            url, json=ping, headers={**alice, principal_header: "bob", "mcp-session-id": session_id}
        )
        assert r.status_code == 404
        assert r.json()["error"]["code"] == -32001
    # The store is down: the restore is answered 503 with Retry-After, quickly.
    flaky.mode = "hang"
    with trio.fail_after(5):
        r = await http.post(second_url, json=ping, headers={**alice, "mcp-session-id": session_id})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["id"] == 5
    # Back up: the same request restores the session on the second instance.
    flaky.mode = "ok"
    r = await http.post(second_url, json=ping, headers={**alice, "mcp-session-id": session_id})
    assert r.status_code == 200
    assert r.json() == {"jsonrpc": "2.0", "id": 5, "result": {}}
    # DELETE on the second instance removes the record: the first cannot bring it back
    # once its own copy is gone.
    r = await http.delete(second_url, headers={**alice, "mcp-session-id": session_id})
    assert r.status_code == 200
    assert await sessions.load(session_id) is None


def test_session_record_of_a_live_session_round_trips() -> None:
    record = SessionRecord("s", "2025-11-25", {"protocolVersion": "2025-11-25"})
    assert SessionRecord.from_json(record.to_json()) == record


async def test_a_racing_request_cannot_resurrect_an_evicted_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class SlowDeletes:
        """A remote store takes its time to delete."""

        def __init__(self) -> None:
            self.inner = InMemorySessionStore()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def delete(self, session_id: str) -> None:
            await trio.sleep(1)
            await self.inner.delete(session_id)

    sessions: Any = SlowDeletes()
    server, _ = make_server()
    limits = SessionLimits(max_sessions=1)
    async with BoundedSessionManager(server, limits=limits, session_store=sessions) as manager:
        victim = await open_on(manager)
        await open_on(manager)  # evicts the victim; its record is deleted in the background
        # The victim's next request arrives before that deletion finished.
        assert await sessions.load(victim) is not None
        assert await manager.restore_session(victim, INFO) is RestoreOutcome.NOT_FOUND
        await trio.sleep(2)
        assert await sessions.load(victim) is None


async def test_a_restore_closed_while_its_hooks_run_is_not_found(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sessions = InMemorySessionStore()
    server, _ = make_server()
    managers: list[BoundedSessionManager] = []
    ids: list[str] = []

    @server.on_initialize
    async def close_restores(client: object, is_restored: bool) -> None:
        if is_restored:  # as a shutdown or the init timeout would, mid-handshake
            await managers[1].close_session(ids[0], CloseReason.SHUTDOWN)
            await trio.sleep(1)

    async with (
        BoundedSessionManager(server, session_store=sessions) as first,
        BoundedSessionManager(server, session_store=sessions) as second,
    ):
        managers += [first, second]
        ids.append(await open_on(first))
        outcome = await second.restore_session(ids[0], INFO)
        assert outcome is RestoreOutcome.NOT_FOUND
        assert second.statistics().live_sessions == 0
        assert second.statistics().slots_held == 0


async def test_a_session_busy_for_longer_than_its_ttl_stays_restorable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sessions = InMemorySessionStore()
    server, _ = make_server()
    limits = SessionLimits(idle_timeout=60)
    async with trio.open_nursery() as nursery:
        first = await nursery.start(
            BoundedSessionManager(server, session_store=sessions, limits=limits).run
        )
        session_id = await open_on(first)
        # A client holds its GET stream open for ten idle timeouts and sends
        # nothing else: the session is busy, so it never idles out...
        stream = await first.create_standalone_stream(session_id)
        assert stream is not None
        await trio.sleep(600)
        assert first.get_session(session_id) is not None
        # ...and its record must outlive it all the same, or a restart loses it.
        assert await sessions.load(session_id) is not None
        nursery.cancel_scope.cancel()  # the instance dies with the stream open
    await trio.sleep(30)  # within the idle timeout of the crash
    async with BoundedSessionManager(server, session_store=sessions, limits=limits) as again:
        assert await again.restore_session(session_id, INFO) is RestoreOutcome.RESTORED
