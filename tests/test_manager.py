"""The nursery-scoped session manager, without HTTP, on trio's mock clock."""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import pytest
import trio
import trio.testing

from _harness import ClosedSessions, live_stats, set_log_level
from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    Context,
    EventStream,
    EvictionPolicy,
    McpServer,
    RequestInfo,
    ServerOptions,
    ServiceUnavailable,
    SessionLimits,
    SessionNotFound,
    TooManySessions,
)
from trio_mcp_sessions._protocol._jsonrpc import Notification, Request, Response
from trio_mcp_sessions._protocol._lifecycle import parse_initialize

INFO = RequestInfo(client_address="127.0.0.1")


def make_server() -> tuple[McpServer, dict[str, int]]:
    server = McpServer("manager-tests")
    counters = {"finished": 0, "cancelled": 0}

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            counters["cancelled"] += 1
            raise
        counters["finished"] += 1
        return "done"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Log twice."""
        await ctx.info("one")
        await ctx.info("two")
        return "ok"

    return server, counters


async def open_session(
    manager: BoundedSessionManager, *, version: str = "2025-11-25", initialized: bool = True
) -> str:
    session_id = await manager.create_session(INFO)
    request = Request(
        1,
        "initialize",
        {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t"}},
    )
    reply = await manager.initialize_session(session_id, request, parse_initialize(request), INFO)
    assert isinstance(reply, Response)
    if initialized:
        await manager.accept_messages(session_id, [Notification("notifications/initialized")], INFO)
    return session_id


def call(request_id: int, name: str, **arguments: object) -> Request:
    return Request(request_id, "tools/call", {"name": name, "arguments": arguments})


async def drain(stream: EventStream) -> list[bytes]:
    """Read a request stream to its end, like the HTTP writer does."""
    try:
        return [event.data async for event in stream if event.data]
    finally:
        stream.detach()


async def test_idle_timeout_is_a_deadline_pushed_by_activity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    limits = SessionLimits(idle_timeout=30, init_timeout=10)
    closes = ClosedSessions()
    async with BoundedSessionManager(server, limits=limits, on_session_closed=closes) as manager:
        session_id = await open_session(manager)
        start = trio.current_time()
        for _ in range(4):  # activity at t = 20, 40, 60, 80
            await trio.sleep(20)
            await manager.accept_messages(
                session_id, [Notification("notifications/roots/list_changed")], INFO
            )
        assert await closes.wait(session_id) is CloseReason.IDLE
        assert trio.current_time() - start == pytest.approx(110)
        assert manager.get_session(session_id) is None
        assert manager.statistics().closed_by_reason == {"idle": 1}


async def test_idle_clock_stops_while_a_request_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, counters = make_server()
    closes = ClosedSessions()
    limits = SessionLimits(idle_timeout=30)
    options = ServerOptions(request_timeout=200)  # the handler may take its 100 s
    async with BoundedSessionManager(
        server, options=options, limits=limits, on_session_closed=closes
    ) as manager:
        session_id = await open_session(manager)
        start = trio.current_time()
        stream = await manager.create_stream(
            session_id, [call(2, "slow", seconds=100)], INFO, "sse"
        )
        answers = await drain(stream)
        assert b'"done"' in answers[0]
        assert counters["finished"] == 1
        assert trio.current_time() - start == pytest.approx(100)
        assert await closes.wait(session_id) is CloseReason.IDLE
        assert trio.current_time() - start == pytest.approx(130)


async def test_idle_clock_stops_while_a_stream_is_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    closes = ClosedSessions()
    limits = SessionLimits(idle_timeout=30)
    async with BoundedSessionManager(server, limits=limits, on_session_closed=closes) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_standalone_stream(session_id)
        assert stream is not None
        await trio.sleep(500)
        assert manager.get_session(session_id) is not None
        start = trio.current_time()
        stream.detach()
        assert await closes.wait(session_id) is CloseReason.IDLE
        assert trio.current_time() - start == pytest.approx(30)


async def test_init_timeout_ends_unused_sessions(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    limits = SessionLimits(idle_timeout=600, init_timeout=5)
    closes = ClosedSessions()
    async with BoundedSessionManager(server, limits=limits, on_session_closed=closes) as manager:
        start = trio.current_time()
        session_id = await open_session(manager, initialized=False)
        assert await closes.wait(session_id) is CloseReason.INIT_TIMEOUT
        assert trio.current_time() - start == pytest.approx(5)
        assert manager.statistics().live_sessions == 0
        assert manager.statistics().slots_held == 0


async def test_close_cancels_handlers_and_ends_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, counters = make_server()
    closed: list[tuple[str, CloseReason]] = []
    async with BoundedSessionManager(
        server, on_session_closed=lambda sid, reason: closed.append((sid, reason))
    ) as manager:
        session_id = await open_session(manager)
        request_stream = await manager.create_stream(
            session_id, [call(2, "slow", seconds=1e6)], INFO, "sse"
        )
        standalone = await manager.create_standalone_stream(session_id)
        assert standalone is not None
        await trio.testing.wait_all_tasks_blocked()
        before = live_stats(manager, session_id)
        assert (before.requests_in_flight, before.attached_streams, before.busy) == (1, 2, True)
        await manager.close_session(session_id, CloseReason.DELETED)
        assert counters["cancelled"] == 1
        assert await drain(request_stream) == []  # ended, and no response
        assert await drain(standalone) == []
        assert closed == [(session_id, CloseReason.DELETED)]
        # Nothing of the session remains.
        assert manager.get_session(session_id) is None
        assert manager.session_statistics(session_id) is None
        stats = manager.statistics()
        assert (stats.live_sessions, stats.busy_sessions, stats.requests_in_flight) == (0, 0, 0)
        assert stats.slots_held == 0
        with pytest.raises(SessionNotFound):
            await manager.create_stream(session_id, [call(3, "slow", seconds=1)], INFO, "sse")
        with pytest.raises(SessionNotFound):
            await manager.close_session(session_id, CloseReason.DELETED)


async def test_cap_is_exact_and_slots_come_back(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    limits = SessionLimits(max_sessions=2, eviction=EvictionPolicy.REJECT)
    async with BoundedSessionManager(server, limits=limits) as manager:
        first = await open_session(manager)
        await open_session(manager)
        with pytest.raises(TooManySessions) as refused:
            await manager.create_session(INFO)
        assert refused.value.retry_after > 0
        assert manager.statistics().live_sessions == 2
        assert manager.statistics().slots_held == 2
        await manager.close_session(first, CloseReason.DELETED)
        await open_session(manager)
        assert manager.statistics().live_sessions == 2


async def test_concurrent_creation_never_exceeds_the_cap() -> None:
    server, _ = make_server()
    outcomes: list[str] = []
    limits = SessionLimits(max_sessions=5, eviction=EvictionPolicy.REJECT)
    async with BoundedSessionManager(server, limits=limits) as manager:

        async def create() -> None:
            try:
                await open_session(manager)
            except TooManySessions:
                outcomes.append("refused")
            else:
                outcomes.append("created")
            assert manager.statistics().live_sessions <= 5

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(create)
        assert outcomes.count("created") == 5
        assert outcomes.count("refused") == 45


async def test_a_slow_initialize_hook_ends_with_the_init_timeout_and_leaves_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()

    @server.on_initialize
    async def stall(client: object, is_restored: bool) -> None:
        await trio.sleep(60)

    async with BoundedSessionManager(server, limits=SessionLimits(init_timeout=5)) as manager:
        start = trio.current_time()
        session_id = await manager.create_session(INFO)
        await trio.sleep(1)
        request = Request(
            1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}}
        )
        # The session's init timeout closes it at t=5; the hook, which runs in
        # the caller's task, is stopped by its own deadline at t=6.
        with pytest.raises(SessionNotFound):
            await manager.initialize_session(session_id, request, parse_initialize(request), INFO)
        assert trio.current_time() - start == pytest.approx(6)
        stats = manager.statistics()
        assert stats.live_sessions == 0
        assert stats.closed_by_reason == {"init_timeout": 1}
        assert manager.statistics().slots_held == 0


async def test_a_session_closed_during_initialize_is_not_handed_out() -> None:
    server, _ = make_server()
    created: list[str] = []
    manager = BoundedSessionManager(server)

    @server.on_initialize
    async def close_it(client: object, is_restored: bool) -> None:
        await manager.close_session(created[0], CloseReason.SHUTDOWN)

    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        created.append(await manager.create_session(INFO))
        request = Request(
            1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}}
        )
        with pytest.raises(SessionNotFound):
            await manager.initialize_session(created[0], request, parse_initialize(request), INFO)
        assert manager.statistics().live_sessions == 0
        assert manager.statistics().slots_held == 0
        await manager.aclose()


async def test_failed_initialize_leaves_nothing(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()

    @server.on_initialize
    def refuse(client: object, is_restored: bool) -> None:
        from trio_mcp_sessions import McpError

        raise McpError(-32602, "go away")

    async with BoundedSessionManager(server) as manager:
        session_id = await manager.create_session(INFO)
        request = Request(
            1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {}}
        )
        reply = await manager.initialize_session(
            session_id, request, parse_initialize(request), INFO
        )
        assert not isinstance(reply, Response)
        assert reply.message == "go away"
        stats = manager.statistics()
        assert stats.live_sessions == 0
        assert stats.closed_by_reason == {"error": 1}
        assert manager.statistics().slots_held == 0


async def test_shutdown_closes_every_session(autojump_clock: trio.testing.MockClock) -> None:
    server, counters = make_server()
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(BoundedSessionManager(server).run)
        ids = [await open_session(manager) for _ in range(3)]
        stream = await manager.create_stream(ids[0], [call(2, "slow", seconds=1e6)], INFO, "sse")
        await trio.testing.wait_all_tasks_blocked()
        await manager.aclose()
    assert counters["cancelled"] == 1
    assert await drain(stream) == []
    stats = manager.statistics()
    assert stats.live_sessions == 0
    assert stats.closed_by_reason == {"shutdown": 3}
    with pytest.raises(ServiceUnavailable):
        await manager.create_session(INFO)


async def test_draining_refuses_new_sessions_and_hints_reconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server, retry_ms=2500) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_standalone_stream(session_id)
        assert stream is not None
        manager.begin_drain()
        events = [event async for event in stream]
        assert [(e.event_id, e.data, e.retry_ms) for e in events] == [(None, b"", 2500)]
        with pytest.raises(ServiceUnavailable):
            await manager.create_session(INFO)


async def test_draining_lets_requests_in_flight_finish_and_starts_nothing_new(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, counters = make_server()
    async with BoundedSessionManager(server, retry_ms=2500) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_stream(session_id, [call(2, "slow", seconds=10)], INFO, "sse")
        manager.begin_drain()
        with pytest.raises(ServiceUnavailable):
            await manager.create_stream(session_id, [call(3, "slow", seconds=1)], INFO, "sse")
        with pytest.raises(ServiceUnavailable):
            await manager.create_standalone_stream(session_id)
        answers = await drain(stream)  # the call in flight answers on its own stream
        assert b'"done"' in answers[-1]
        assert counters["finished"] == 1


async def test_finish_drain_ends_what_is_left_with_a_retry_hint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server, retry_ms=2500) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_stream(
            session_id, [call(2, "slow", seconds=1e6)], INFO, "sse"
        )
        manager.begin_drain()
        await trio.sleep(5)
        assert not stream.ended  # the grace period is not over
        manager.finish_drain()
        events = [event async for event in stream]
        assert [(e.event_id, e.data, e.retry_ms) for e in events] == [(None, b"", 2500)]


async def test_cancelled_request_gets_no_response(autojump_clock: trio.testing.MockClock) -> None:
    server, counters = make_server()
    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_stream(
            session_id, [call(7, "slow", seconds=1e6)], INFO, "sse"
        )
        await trio.testing.wait_all_tasks_blocked()
        await manager.accept_messages(
            session_id,
            [Notification("notifications/cancelled", {"requestId": 7, "reason": "user"})],
            INFO,
        )
        assert await drain(stream) == []
        assert counters["cancelled"] == 1
        assert manager.get_session(session_id) is not None


async def test_related_notifications_travel_on_the_request_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        standalone = await manager.create_standalone_stream(session_id)
        assert standalone is not None
        stream = await manager.create_stream(session_id, [call(2, "chatty")], INFO, "sse")
        assert stream.priming is not None
        assert stream.priming.data == b""
        answers = await drain(stream)
        assert [b'"one"' in answers[0], b'"two"' in answers[1], b'"ok"' in answers[2]] == [
            True,
            True,
            True,
        ]
        with pytest.raises(trio.WouldBlock):
            standalone.receive_nowait()
        standalone.detach()


async def test_statistics_is_a_frozen_record(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        await manager.close_session(session_id, CloseReason.DELETED)
        stats = manager.statistics()
        assert (stats.live_sessions, stats.created, stats.closed) == (0, 1, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.created = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_sessions": 0}, ValueError),
        ({"max_sessions": 2.5}, TypeError),
        ({"idle_timeout": 0}, ValueError),
        ({"init_timeout": -1}, ValueError),
        ({"idle_timeout": float("nan")}, ValueError),
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        SessionLimits(**kwargs)  # type: ignore[arg-type]


async def test_manager_runs_once() -> None:
    server, _ = make_server()
    manager = BoundedSessionManager(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        with pytest.raises(RuntimeError):
            await manager.run()
        nursery.start_soon(partial(manager.aclose))


async def test_first_get_receives_what_was_sent_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        # JSON replies: related messages go to the standalone stream, nobody listens yet.
        answers = await drain(
            await manager.create_stream(session_id, [call(2, "chatty")], INFO, "json")
        )
        assert len(answers) == 1
        assert b'"ok"' in answers[0]
        first = await manager.create_standalone_stream(session_id)
        assert first is not None
        assert [b'"one"' in e.data for e in first.replay] == [True, False]
        assert b'"two"' in first.replay[1].data
        first.detach()
        second = await manager.create_standalone_stream(session_id)
        assert second is not None
        assert second.replay == []  # only the first GET gets the backlog
        second.detach()


async def test_uncaught_client_errors_in_tools_become_tool_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()

    @server.tool()
    async def needs_sampling(ctx: Context) -> str:
        """Asks the model."""
        result = await ctx.sample("hi", max_tokens=5)
        return str(result)

    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)  # declared no sampling capability
        answers = await drain(
            await manager.create_stream(session_id, [call(2, "needs_sampling")], INFO, "sse")
        )
        assert b'"isError":true' in answers[0]
        assert b"sampling" in answers[0]


async def test_public_async_methods_are_checkpoints(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager, initialized=False)
        with trio.testing.assert_checkpoints():
            await manager.has_session(session_id)
        with trio.testing.assert_checkpoints():
            await manager.accept_messages(session_id, [], INFO)
        with trio.testing.assert_checkpoints():
            await manager.restore_session(session_id, INFO)
        with trio.testing.assert_checkpoints():
            stream = await manager.create_standalone_stream(session_id)
        assert stream is not None
        stream.detach()
        with trio.testing.assert_checkpoints():
            await manager.notify_all("notifications/tools/list_changed")


async def test_a_cancelled_creation_allocates_nothing() -> None:
    server, _ = make_server()
    async with BoundedSessionManager(server, limits=SessionLimits(max_sessions=1)) as manager:
        with trio.CancelScope() as scope:
            scope.cancel()
            await manager.create_session(INFO)
        assert scope.cancelled_caught
        stats = manager.statistics()
        assert (stats.live_sessions, stats.created) == (0, 0)
        assert manager.statistics().slots_held == 0
        # The one slot is still there.
        await open_session(manager)


async def test_closing_an_idle_session_frees_its_slot_before_close_returns() -> None:
    server, _ = make_server()
    closes = ClosedSessions()
    limits = SessionLimits(max_sessions=1)
    async with BoundedSessionManager(server, limits=limits, on_session_closed=closes) as manager:
        session_id = await open_session(manager)
        await trio.testing.wait_all_tasks_blocked()  # its worker is parked
        await manager.close_session(session_id)
        assert closes.reasons == {session_id: CloseReason.DELETED}
        assert manager.statistics().slots_held == 0
        assert manager.statistics().closed_by_reason == {"deleted": 1}
        await trio.testing.wait_all_tasks_blocked()
        # Its worker is gone, not left parked.
        root = trio.lowlevel.current_root_task()
        assert root is not None
        tasks = [
            t for n in root.child_nurseries for t in _all_tasks(n) if t.name.endswith("Session.run")
        ]
        assert tasks == []


def _all_tasks(nursery: trio.Nursery) -> list[trio.lowlevel.Task]:
    found = []
    for task in nursery.child_tasks:
        found.append(task)
        for child in task.child_nurseries:
            found.extend(_all_tasks(child))
    return found


async def test_a_handler_that_only_logs_still_lets_other_tasks_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("chatter")
    ticks: list[int] = []
    ticker_steps = 0

    @server.tool()
    async def chatter(ctx: Context) -> str:
        """Log many times, awaiting nothing else."""
        for n in range(50):
            await ctx.info(f"line {n}")
            ticks.append(ticker_steps)
        return "done"

    async def ticker() -> None:
        nonlocal ticker_steps
        while True:
            await trio.lowlevel.checkpoint()
            ticker_steps += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with BoundedSessionManager(server, event_store=None) as manager:
            session_id = await open_session(manager)
            await set_log_level(manager, session_id, "debug")
            stream = await manager.create_stream(session_id, [call(2, "chatter")], INFO, "sse")
            assert any(b'"done"' in data for data in await drain(stream))
        nursery.cancel_scope.cancel()
    assert ticks[-1] - ticks[0] >= 40  # the ticker ran between the logs


async def test_a_session_is_not_initialized_while_its_initialize_hooks_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Issue 10: SessionInfo.initialized was true while the lifecycle state was still new."""
    server, _ = make_server()
    in_hook = trio.Event()
    release = trio.Event()

    @server.on_initialize
    async def slow_hook(client: object, is_restored: bool) -> None:
        in_hook.set()
        await release.wait()

    async with BoundedSessionManager(server) as manager:
        session_id = await manager.create_session(INFO)
        request = Request(
            1,
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                manager.initialize_session, session_id, request, parse_initialize(request), INFO
            )
            await in_hook.wait()
            info = manager.get_session(session_id)
            assert info is not None
            assert not info.initialized
            release.set()
        info = manager.get_session(session_id)
        assert info is not None
        assert info.initialized


async def test_the_deprecated_session_and_limiter_still_work_and_warn() -> None:
    """``session()`` and ``limiter`` stay for old callers, with a DeprecationWarning."""
    server, _ = make_server()
    async with BoundedSessionManager(server, limits=SessionLimits(max_sessions=3)) as manager:
        session_id = await open_session(manager)
        with pytest.warns(DeprecationWarning, match=r"session_statistics\(\)"):
            session = manager.session(session_id)
        assert session.session_id == session_id
        assert session.is_open
        with pytest.warns(DeprecationWarning, match=r"slots_held"):
            limiter = manager.limiter
        assert isinstance(limiter, trio.CapacityLimiter)
        assert limiter.total_tokens == 3
        assert limiter.borrowed_tokens == manager.statistics().slots_held == 1
        with pytest.warns(DeprecationWarning, match="deprecated"), pytest.raises(SessionNotFound):
            manager.session("no-such-session")


async def test_a_notification_handler_logs_on_the_get_stream_through_its_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A notification has no request: its handler's Context sends on the standalone stream."""
    server, _ = make_server()
    contexts: list[Context] = []

    @server.notification_handler("notifications/roots/list_changed")
    async def roots_changed(ctx: Context, params: dict[str, object]) -> None:
        contexts.append(ctx)
        await ctx.warning("roots changed")

    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        get = await manager.create_standalone_stream(session_id)
        assert get is not None
        try:
            await manager.accept_messages(
                session_id, [Notification("notifications/roots/list_changed")], INFO
            )
            with trio.fail_after(5):
                while not (event := await get.receive()).data:
                    pass  # a priming event carries no message
        finally:
            get.detach()
        (ctx,) = contexts
        assert ctx.request_id is None
        assert ctx.session_id == session_id
        assert json.loads(event.data) == {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "warning", "data": "roots changed"},
        }
        assert live_stats(manager, session_id).requests_in_flight == 0
