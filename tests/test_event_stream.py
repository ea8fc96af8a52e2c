"""EventStream: the buffer between a session's producers and one HTTP response."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from _harness import live_stats, set_log_level
from test_manager import INFO, call, open_session
from trio_mcp_sessions import (
    BoundedSessionManager,
    Context,
    EventStream,
    InMemoryEventStore,
    McpServer,
    SessionLimits,
    StoredEvent,
)
from trio_mcp_sessions._session import STREAM_BUFFER, SseEvent

if TYPE_CHECKING:
    from collections.abc import Sequence


def event(n: int) -> SseEvent:
    return SseEvent(f"s_{n}", b'{"n":%d}' % n)


def test_events_come_out_in_order_then_end_of_channel() -> None:
    stream = EventStream("s")
    with pytest.raises(trio.WouldBlock):
        stream.receive_nowait()
    stream.send_nowait(event(1))
    stream.send_nowait(event(2))
    stream.end()
    assert stream.ended
    assert stream.receive_nowait() == event(1)
    assert stream.take_ready() == [event(2)]
    assert stream.take_ready() == []
    with pytest.raises(trio.EndOfChannel):
        stream.receive_nowait()
    with pytest.raises(trio.ClosedResourceError):
        stream.send_nowait(event(3))


def test_a_full_buffer_refuses_instead_of_blocking() -> None:
    stream = EventStream("s", max_buffer=2)
    stream.send_nowait(event(1))
    stream.send_nowait(event(2))
    with pytest.raises(trio.WouldBlock):
        stream.send_nowait(event(3))
    assert stream.receive_nowait() == event(1)
    stream.send_nowait(event(3))
    assert stream.take_ready() == [event(2), event(3)]
    with pytest.raises(ValueError, match="max_buffer"):
        EventStream("s", max_buffer=0)


def test_detach_drops_the_buffer_and_calls_back_once() -> None:
    calls: list[str] = []
    stream = EventStream("s", on_detach=lambda: calls.append("detached"))
    stream.send_nowait(event(1))
    stream.detach()
    stream.detach()
    assert calls == ["detached"]
    with pytest.raises(trio.BrokenResourceError):
        stream.send_nowait(event(2))
    with pytest.raises(trio.ClosedResourceError):
        stream.receive_nowait()


def test_the_waker_fires_once_on_news_and_at_once_when_news_is_there() -> None:
    stream = EventStream("s")
    woken: list[int] = []
    stream.set_waker(lambda: woken.append(1))
    stream.send_nowait(event(1))
    stream.send_nowait(event(2))
    assert woken == [1]  # once: a waker is taken when it fires
    stream.set_waker(lambda: woken.append(2))  # events are buffered: fires now
    assert woken == [1, 2]
    stream.take_ready()
    stream.set_waker(lambda: woken.append(3))
    stream.set_waker(None)
    stream.end()
    assert woken == [1, 2]
    stream.set_waker(lambda: woken.append(4))  # ended: fires now
    assert woken == [1, 2, 4]


async def test_receive_waits_for_an_event_and_async_for_stops_at_the_end() -> None:
    stream = EventStream("s")
    got: list[SseEvent] = []

    async def reader() -> None:
        async for e in stream:
            got.append(e)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await stream.receive()
        stream.send_nowait(event(1))
        await trio.testing.wait_all_tasks_blocked()
        assert got == [event(1)]
        stream.send_nowait(event(2))
        stream.end()
    assert got == [event(1), event(2)]


async def test_a_cancelled_receive_loses_nothing() -> None:
    stream = EventStream("s")
    with trio.move_on_after(0.01):
        await stream.receive()
    stream.send_nowait(event(1))
    assert await stream.receive() == event(1)


def test_the_byte_bound_fills_the_buffer_and_put_queues_past_it() -> None:
    stream = EventStream("s", max_buffer_bytes=10)
    stream.send_nowait(SseEvent("s_1", b"x" * 12))  # one event over the bound is taken
    assert not stream.writable
    with pytest.raises(trio.WouldBlock):
        stream.send_nowait(event(2))
    stream.put(event(2))  # put keeps producers' order: it never refuses for space
    assert [e.event_id for e in stream.take_ready()] == ["s_1", "s_2"]
    assert stream.writable
    with pytest.raises(ValueError, match="max_buffer_bytes"):
        EventStream("s", max_buffer_bytes=0)


async def test_wait_writable_waits_for_a_reader_that_takes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = EventStream("s", max_buffer=1)
    stream.put(event(1))
    async with trio.open_nursery() as nursery:

        async def slow_reader() -> None:
            for _ in range(3):
                await trio.sleep(20)  # each take comes before the 30 s timeout
                stream.take_ready()

        nursery.start_soon(slow_reader)
        for n in (2, 3):
            assert await stream.wait_writable(30)
            stream.put(event(n))
        assert await stream.wait_writable(30)
    assert trio.current_time() == pytest.approx(60)
    assert not stream.dropped


async def test_wait_writable_drops_a_reader_that_takes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    detached: list[bool] = []
    stream = EventStream("s", max_buffer=1, on_detach=lambda: detached.append(True))
    stream.put(event(1))
    assert not await stream.wait_writable(30)
    assert trio.current_time() == pytest.approx(30)
    assert stream.dropped
    assert stream.ended
    assert detached == [True]
    assert stream.take_ready() == []  # what it had not taken is freed
    with pytest.raises(trio.EndOfChannel):
        stream.receive_nowait()


async def test_a_reader_that_keeps_up_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("fast-reader")
    burst = STREAM_BUFFER * 3

    @server.tool()
    async def burst_logs(ctx: Context) -> str:
        """Log more than a response buffers, as fast as it can."""
        for n in range(burst):
            await ctx.info(f"line {n}")
        return "done"

    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        await set_log_level(manager, session_id, "debug")
        stream = await manager.create_stream(session_id, [call(2, "burst_logs")], INFO, "sse")
        try:
            received = [e.data async for e in stream]
        finally:
            stream.detach()
        assert len(received) == burst + 1
        assert b'"done"' in received[-1]
        assert manager.statistics().dropped_readers == 0


async def test_a_reader_that_stops_is_dropped_and_resumes_from_the_store(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("slow-reader")
    burst = STREAM_BUFFER * 2

    @server.tool()
    async def burst_logs(ctx: Context) -> str:
        """Log more than a response buffers."""
        for n in range(burst):
            await ctx.info(f"line {n}")
        return "done"

    store = InMemoryEventStore()
    limits = SessionLimits(write_timeout=30)
    async with BoundedSessionManager(server, event_store=store, limits=limits) as manager:
        session_id = await open_session(manager)
        await set_log_level(manager, session_id, "debug")
        stream = await manager.create_stream(session_id, [call(2, "burst_logs")], INFO, "sse")
        await trio.sleep(29)
        # Back-pressure: the handler waits for the reader, within the write timeout...
        assert not stream.ended
        assert live_stats(manager, session_id).busy
        await trio.sleep(2)
        # ...then the reader that took nothing is dropped, and the handler goes on.
        assert stream.dropped
        assert manager.statistics().dropped_readers == 1
        await trio.sleep(1)
        assert not live_stats(manager, session_id).busy
        stream.detach()
        # Every event, the answer included, is in the store to resume from.
        first = SseEvent(f"{stream.stream_id}_0", b"").event_id
        assert first is not None
        resumed = await manager.resume(session_id, first)
        rest = [e.data for e in resumed.replay]
        resumed.detach()
        assert len(rest) == burst + 1
        assert b'"done"' in rest[-1]


async def test_a_broadcast_never_waits_for_a_stalled_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("broadcast")
    async with BoundedSessionManager(server) as manager:
        stalled = await open_session(manager)
        listening = await open_session(manager)
        stalled_stream = await manager.create_standalone_stream(stalled)
        live_stream = await manager.create_standalone_stream(listening)
        assert stalled_stream is not None
        assert live_stream is not None
        started = trio.current_time()
        for _ in range(STREAM_BUFFER + 1):
            assert await manager.notify_all("notifications/tools/list_changed") == 2
            live_stream.take_ready()  # this reader keeps up
        # No wait on the stalled reader: it is dropped, the other is served.
        assert trio.current_time() == started
        assert stalled_stream.dropped
        assert not live_stream.dropped
        assert manager.statistics().dropped_readers == 1
        stalled_stream.detach()
        live_stream.detach()


class AsyncOnlyStore:
    """The in-memory event store without its ``*_nowait`` methods, like SQLite or Redis."""

    def __init__(self) -> None:
        self._store = InMemoryEventStore()

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        await self._store.append(session_id, stream_id, seq, data)

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        return await self._store.replay_after(session_id, stream_id, after_seq)

    async def delete_session(self, session_id: str) -> None:
        await self._store.delete_session(session_id)


async def test_a_resume_does_not_wait_for_the_stalled_reader_it_replaces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("resume-while-full")

    @server.tool()
    async def burst_logs(ctx: Context) -> str:
        """Log more than a response buffers."""
        for n in range(STREAM_BUFFER * 3):
            await ctx.info(f"line {n}")
        return "done"

    async with BoundedSessionManager(server, event_store=AsyncOnlyStore()) as manager:
        session_id = await open_session(manager)
        await set_log_level(manager, session_id, "debug")
        stalled = await manager.create_stream(session_id, [call(2, "burst_logs")], INFO, "sse")
        await trio.sleep(1)  # the buffer is full, the handler waits for this reader
        assert not stalled.writable
        started = trio.current_time()
        # Before: the resume queued behind the waiting producer's lock for 30 s.
        resumed = await manager.resume(session_id, f"{stalled.stream_id}_0")
        assert trio.current_time() - started < 1
        events = [e.data async for e in resumed]
        resumed.detach()
        stalled.detach()
        assert len(resumed.replay) + len(events) == STREAM_BUFFER * 3 + 1
        assert b'"done"' in (events or [e.data for e in resumed.replay])[-1]


async def test_a_large_broadcast_reaches_a_reader_that_keeps_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with BoundedSessionManager(McpServer("big-broadcast")) as manager:
        session_id = await open_session(manager)
        stream = await manager.create_standalone_stream(session_id)
        assert stream is not None
        blob = "x" * (2 * 1024 * 1024)  # over the buffer's byte bound on its own
        assert await manager.notify_all("notifications/message", {"data": blob}) == 1
        # An empty buffer takes one event however large: not a dropped reader.
        assert not stream.dropped
        (event,) = stream.take_ready()
        assert blob.encode() in event.data
        stream.detach()
