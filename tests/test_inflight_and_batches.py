"""Bounds on what one session may run at once: the in-flight cap and the batch maximum.

Over real HTTP (Hypercorn on 127.0.0.1:0): a refused request or batch starts
nothing, and a batch within the bounds is answered whole, however fast its
answers come.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from _harness import (
    INVALID_REQUEST,
    LEGACY,
    SERVER_ERROR,
    ReplyMode,
    assert_error,
    call,
    messages,
    notification,
    ping,
    start,
    wait_until,
)
from test_manager import INFO, make_server, open_session
from test_manager import call as manager_call
from trio_mcp_sessions import BoundedSessionManager, InputLimits, SessionLimits, TooManyInFlight
from trio_mcp_sessions._protocol._jsonrpc import Notification

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer


@pytest.mark.parametrize("reply_mode", ["sse", "json"])
async def test_a_batch_at_the_maximum_is_answered_whole(
    start_server: StartServer, http: httpx.AsyncClient, reply_mode: ReplyMode
) -> None:
    # 100 quick answers arrive faster than one response buffer (64 events)
    # holds: back-pressure, not a cut stream or a partial JSON answer.
    with trio.fail_after(20):
        h = await start(start_server, http, reply_mode=reply_mode)
        session_id = await h.initialize(LEGACY)
        batch = [call("echo", n, text=f"t{n}") for n in range(1, 101)]
        r = await h.post(batch, session_id, LEGACY)
        assert r.status_code == 200, r.text
        replies = {m["id"]: m for m in messages(r)}
        assert set(replies) == set(range(1, 101))
        assert all(replies[n]["result"]["content"][0]["text"] == f"t{n}" for n in replies)
        assert h.stats().dropped_readers == 0


async def test_a_batch_over_the_maximum_is_refused_before_any_of_it_runs(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        h = await start(start_server, http, input_limits=InputLimits(max_batch_size=5))
        session_id = await h.initialize(LEGACY)
        before = h.stats()
        batch = [call("hang", n) for n in range(1, 7)]
        r = await h.post(batch, session_id, LEGACY)
        body = assert_error(r, 400, INVALID_REQUEST)
        assert "at most 5" in body["error"]["message"]
        assert h.inflight(session_id) == 0
        assert not h.probe.hanging.is_set()
        h.assert_nothing_allocated(before)
        # Notifications count too: each would start a task.
        r = await h.post([notification("notifications/roots/list_changed")] * 6, session_id, LEGACY)
        assert_error(r, 400, INVALID_REQUEST)
        r = await h.post([ping(1), ping(2)], session_id, LEGACY)
        assert r.status_code == 200


async def test_requests_over_the_inflight_cap_get_429_and_start_nothing(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        limits = SessionLimits(max_inflight_per_session=2)
        h = await start(start_server, http, limits=limits)
        session_id = await h.initialize()
        async with trio.open_nursery() as nursery:
            for n in (1, 2):
                nursery.start_soon(h.post, call("hang", n), session_id)
            await wait_until(lambda: h.inflight(session_id) == 2)
            r = await h.post(call("echo", 3, text="no room"), session_id)
            assert_error(r, 429, SERVER_ERROR, request_id=3)
            assert r.headers["retry-after"] == "1"
            assert h.inflight(session_id) == 2
            assert h.stats().refused_by_reason["inflight"] == 1
            # Cancelling one makes room again.
            r = await h.post(notification("notifications/cancelled", requestId=1), session_id)
            assert r.status_code == 202
            await wait_until(lambda: h.inflight(session_id) == 1)
            r = await h.post(call("echo", 4, text="room"), session_id)
            assert r.status_code == 200
            assert messages(r)[0]["result"]["content"][0]["text"] == "room"
            nursery.cancel_scope.cancel()


async def test_a_batch_that_does_not_fit_the_cap_is_refused_whole(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        h = await start(start_server, http, limits=SessionLimits(max_inflight_per_session=3))
        session_id = await h.initialize(LEGACY)
        r = await h.post([call("hang", n) for n in range(1, 5)], session_id, LEGACY)
        assert_error(r, 429, SERVER_ERROR)
        assert h.inflight(session_id) == 0
        assert not h.probe.hanging.is_set()
        assert h.stats().refused_by_reason["inflight"] == 4


async def test_the_inflight_cap_in_the_manager(autojump_clock: trio.testing.MockClock) -> None:
    server, _ = make_server()
    limits = SessionLimits(max_inflight_per_session=1)
    async with BoundedSessionManager(server, limits=limits) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_stream(
            session_id, [manager_call(2, "slow", seconds=10)], INFO, "sse"
        )
        assert manager.statistics().requests_in_flight == 1
        with pytest.raises(TooManyInFlight):
            await manager.create_stream(
                session_id, [manager_call(3, "slow", seconds=1)], INFO, "sse"
            )
        # Notification handlers have a count of their own under the same cap.
        await manager.accept_messages(
            session_id, [Notification("notifications/roots/list_changed")], INFO
        )
        await trio.sleep(11)
        assert manager.statistics().requests_in_flight == 0
        stream.detach()
        again = await manager.create_stream(
            session_id, [manager_call(4, "slow", seconds=1)], INFO, "sse"
        )
        again.detach()


def test_the_inflight_cap_is_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SessionLimits(max_inflight_per_session=0)
    with pytest.raises(TypeError, match="int"):
        SessionLimits(max_inflight_per_session=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        SessionLimits(write_timeout=0)


async def test_notification_handlers_count_against_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    release = trio.Event()

    @server.notification_handler("notifications/roots/list_changed")
    async def roots_changed(peer: object, params: dict[str, object]) -> None:
        await release.wait()

    changed = Notification("notifications/roots/list_changed")
    limits = SessionLimits(max_inflight_per_session=2)
    async with BoundedSessionManager(server, limits=limits) as manager:
        session_id = await open_session(manager)
        await manager.accept_messages(session_id, [changed, changed], INFO)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(TooManyInFlight):
            await manager.accept_messages(session_id, [changed], INFO)
        # Cancellations (and responses) start no task: never refused.
        cancel = Notification("notifications/cancelled", {"requestId": 99})
        await manager.accept_messages(session_id, [cancel], INFO)
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        await manager.accept_messages(session_id, [changed], INFO)
        assert manager.statistics().refused_by_reason["inflight"] == 1
