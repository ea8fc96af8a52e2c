"""Shutdown is a drain, and a client that stops reading cannot hold the server.

Real sockets and the real clock (Hypercorn through :func:`serve` on
127.0.0.1:0), every test bounded by ``fail_after``: requests in flight at the
signal finish and deliver their answers, what outlasts the grace period ends
with a ``retry`` hint, connections whose clients stopped reading are cut, and
the server is gone within the grace period plus a small margin.
"""

from __future__ import annotations

import json
import signal
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from _drain_server import server as drain_server
from _harness import call, manager_of, wait_until
from _processes import ServerProcess, initialize, session_headers
from trio_mcp_sessions import SessionLimits, StreamableHTTPApp, serve
from trio_mcp_sessions._serve import Connections, _watch_writes, _WatchedStream

if TYPE_CHECKING:
    from pathlib import Path


TARGET = "tests/_drain_server.py:server"


async def start_serving(
    nursery: trio.Nursery, app: StreamableHTTPApp, stop: trio.Event, grace: float
) -> tuple[str, trio.Event]:
    """Serve *app* until *stop*; the endpoint URL and an event set when serve() returned."""
    done = trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(
                app,
                bind="127.0.0.1:0",
                graceful_timeout=grace,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        finally:
            done.set()

    urls = await nursery.start(run)
    return f"{urls[0]}/mcp", done


async def test_requests_in_flight_at_shutdown_finish_and_deliver_their_answers() -> None:
    app = StreamableHTTPApp(drain_server)
    stop = trio.Event()
    answers: dict[int, str] = {}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url, done = await start_serving(nursery, app, stop, grace=3)
            async with httpx.AsyncClient(timeout=10) as http:
                ids = [await initialize(http, url) for _ in range(25)]

                async def one_call(n: int, session_id: str) -> None:
                    r = await http.post(
                        url, json=call("pause", n, seconds=0.5), headers=session_headers(session_id)
                    )
                    assert r.status_code == 200, r.text
                    answers[n] = r.text

                async with trio.open_nursery() as calls:
                    for n, session_id in enumerate(ids):
                        calls.start_soon(one_call, n, session_id)
                    await wait_until(lambda: manager_of(app).statistics().requests_in_flight == 25)
                    started = trio.current_time()
                    stop.set()
            await done.wait()
            # The server went as soon as the work in flight was answered.
            assert trio.current_time() - started < 2.5
    assert sorted(answers) == list(range(25))
    assert all("paused 0.5" in text for text in answers.values())
    assert manager_of(app).statistics().closed_by_reason == {"shutdown": 25}


async def test_what_outlasts_the_grace_period_ends_with_a_retry_hint() -> None:
    app = StreamableHTTPApp(drain_server, retry_ms=2345)
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url, done = await start_serving(nursery, app, stop, grace=1)
            async with httpx.AsyncClient(timeout=10) as http:
                session_id = await initialize(http, url)
                headers = session_headers(session_id)
                async with http.stream(
                    "POST", url, json=call("pause", 2, seconds=60), headers=headers
                ) as r:
                    lines = r.aiter_lines()
                    assert (await lines.__anext__()).startswith("id: ")  # priming
                    async with http.stream(
                        "GET", url, headers={**headers, "accept": "text/event-stream"}
                    ) as get:
                        get_lines = get.aiter_lines()
                        assert (await get_lines.__anext__()).startswith("id: ")
                        started = trio.current_time()
                        stop.set()
                        # The GET stream ends at once: it carries no work in flight.
                        assert "retry: 2345" in [line async for line in get_lines]
                        assert trio.current_time() - started < 0.5
                    rest = [line async for line in lines]
                    ended = trio.current_time() - started
            # The call's stream ended just before the grace period was up, resumable.
            assert "retry: 2345" in rest
            assert 0.5 < ended < 1.0
            await done.wait()
            assert trio.current_time() - started < 1.5


async def stalled_client(url: str, session_id: str, body: dict[str, Any]) -> trio.SocketStream:
    """POST *body* on a raw socket with a tiny receive buffer, and never read the answer."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    payload = json.dumps(body).encode()
    head = "".join(
        f"{name}: {value}\r\n"
        for name, value in {
            **session_headers(session_id),
            "host": f"{host}:{port}",
            "content-length": str(len(payload)),
        }.items()
    )
    await stream.send_all(f"POST /mcp HTTP/1.1\r\n{head}\r\n".encode() + payload)
    return stream


async def test_shutdown_finishes_in_time_whatever_stalled_readers_do() -> None:
    # 30 s write timeout: only shutdown can free these connections here.
    app = StreamableHTTPApp(drain_server, limits=SessionLimits(write_timeout=30))
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url, done = await start_serving(nursery, app, stop, grace=1)
            async with httpx.AsyncClient(timeout=10) as http:
                ids = [await initialize(http, url) for _ in range(5)]
            clients = [await stalled_client(url, s, call("big", 2, kib=8192)) for s in ids]
            await wait_until(lambda: manager_of(app).statistics().busy_sessions == 0, timeout=10)
            await trio.sleep(0.5)  # the answers are written, and stuck in the sockets
            started = trio.current_time()
            stop.set()
            await done.wait()
            took = trio.current_time() - started
            for client in clients:
                await client.aclose()
    # Before: Hypercorn's shielded writes kept the server up until the clients left.
    assert took < 1.0 + 0.6, took
    assert app.statistics().connections_cut == 5


async def test_a_reader_that_stops_has_its_connection_cut_after_the_write_timeout() -> None:
    app = StreamableHTTPApp(drain_server, limits=SessionLimits(write_timeout=1))
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url, done = await start_serving(nursery, app, stop, grace=1)
            async with httpx.AsyncClient(timeout=10) as http:
                session_id = await initialize(http, url)
                client = await stalled_client(url, session_id, call("big", 2, kib=8192))
                started = trio.current_time()
                # The connection is reset: reading it ends in an error or EOF,
                # within the write timeout and the watchdog's period.
                # It reads nothing, then finds its connection reset.
                await wait_until(lambda: app.statistics().connections_cut == 1, timeout=5)
                assert trio.current_time() - started < 1 + 1 / 4 + 1
                with pytest.raises(trio.BrokenResourceError):  # noqa: PT012
                    while await client.receive_some(1024 * 1024):
                        pass
                    raise trio.BrokenResourceError("closed without a reset")
                assert app.statistics().connections_cut == 1
                await client.aclose()
                # The session lives on, idle again, and serves its client.
                r = await http.post(
                    url, json=call("pause", 3, seconds=0), headers=session_headers(session_id)
                )
                assert r.status_code == 200
            stop.set()
            await done.wait()


async def test_sigterm_with_calls_in_flight_answers_them_and_keeps_sessions(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "mcp.db")
    first = await ServerProcess.start(
        TARGET, "--sqlite", database, "--graceful-timeout", "5", "--metrics-path", "/metrics"
    )
    metrics = first.url.replace("/mcp", "/metrics")
    answers: dict[int, int] = {}
    exit_codes: list[int] = []
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            ids = [await initialize(http, first.url) for _ in range(25)]

            async def one_call(n: int, session_id: str) -> None:
                r = await http.post(
                    first.url,
                    json=call("pause", n, seconds=1),
                    headers=session_headers(session_id),
                )
                answers[n] = r.status_code if "paused 1" in r.text else -r.status_code

            async def all_in_flight() -> bool:
                text = (await http.get(metrics)).text
                return "mcp_requests_in_flight 25.0" in text

            with trio.fail_after(20):
                async with trio.open_nursery() as calls:
                    for n, session_id in enumerate(ids):
                        calls.start_soon(one_call, n, session_id)
                    # Every call has reached the server (not only been sent) before the signal.
                    while not await all_in_flight():  # noqa: ASYNC110
                        await trio.sleep(0.02)

                    async def stop() -> None:
                        exit_codes.append(await first.stop(signal.SIGTERM))

                    calls.start_soon(stop)
        assert exit_codes == [0]
        assert b"Traceback" not in first.stderr, first.stderr.decode()
    finally:
        await first.kill()
    assert answers == dict.fromkeys(range(25), 200)

    second = await ServerProcess.start(TARGET, "--sqlite", database)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for n, session_id in enumerate(ids):
                r = await http.post(
                    second.url,
                    json={"jsonrpc": "2.0", "id": n, "method": "ping"},
                    headers=session_headers(session_id),
                )
                assert r.status_code == 200, r.text
        assert await second.stop() == 0
    finally:
        await second.kill()


async def _watched_pair() -> tuple[_WatchedStream, trio.SocketStream]:
    """A server side watched as serve() watches it, and its client, over loopback TCP."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server_side = await listeners[0].accept()
    await listeners[0].aclose()
    return _WatchedStream(server_side), client


async def test_the_write_watchdog_cuts_a_write_that_makes_no_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watched, client = await _watched_pair()
    connections = Connections()
    assert connections.add(watched) is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_writes, connections, 30)
        # Shielded, as Hypercorn writes: only cutting the socket ends it.
        with pytest.raises(trio.BrokenResourceError), trio.CancelScope(shield=True):
            await watched.send_all(b"x" * (32 * 1024 * 1024))  # nobody reads
        nursery.cancel_scope.cancel()
    assert 30 <= trio.current_time() <= 30 * 1.25 + 1
    assert connections.cut == 1
    assert len(connections) == 0
    await client.aclose()
    await watched.aclose()


async def test_the_write_watchdog_leaves_a_slow_reader_that_keeps_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Real sockets under a mock clock: let the kernel report readiness (10 ms of
    # real idleness) before the clock jumps, or a jump could outrun a transfer.
    autojump_clock.autojump_threshold = 0.01
    watched, client = await _watched_pair()
    connections = Connections()
    connections.add(watched)
    size = 4 * 1024 * 1024
    received = 0
    everything = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_writes, connections, 30)

            async def slow_reader() -> None:
                nonlocal received
                while received < size:
                    await trio.sleep(5)  # far slower than the writer, never stalled for 30 s
                    received += len(await client.receive_some(64 * 1024))
                everything.set()

            nursery.start_soon(slow_reader)
            await watched.send_all(b"x" * size)  # one write of minutes, in steps
            assert trio.current_time() > 60
            await everything.wait()
            nursery.cancel_scope.cancel()
    finally:
        await client.aclose()
        await watched.aclose()
    assert connections.cut == 0


async def test_the_grace_period_on_trio_s_clock(autojump_clock: trio.testing.MockClock) -> None:
    """Hints a quarter second before the grace ends (at most a quarter of it), cuts just after."""
    from trio_mcp_sessions._serve import _finish_drain

    app = StreamableHTTPApp(drain_server)
    hinted: list[float] = []
    app.finish_drain = lambda: hinted.append(trio.current_time())  # type: ignore[method-assign]
    watched, client = await _watched_pair()
    connections = Connections()
    connections.add(watched)
    try:
        await _finish_drain(app, connections, 5.0)
        assert hinted == [pytest.approx(4.75)]
        assert trio.current_time() == pytest.approx(5.1)
        assert connections.cut == 1
        hinted.clear()
        await _finish_drain(app, None, 0.4)  # a short grace: hint at three quarters of it
        assert hinted == [pytest.approx(5.1 + 0.3)]
    finally:
        await client.aclose()
        await watched.aclose()
