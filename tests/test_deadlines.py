"""Deadlines: a handler's (progress pushes it, never past a maximum), the body's, the headers'.

Every deadline runs on trio's clock: the sessionless service and a session
without HTTP, the app through the test kit, then real Hypercorn on 127.0.0.1
for what a socket decides (the clock jumps only after 10 ms of real
idleness, so the kernel delivers first).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from conftest import initialize_body
from test_manager import INFO, call, drain, open_session
from test_sessionless import modern
from trio_mcp_sessions import (
    BoundedSessionManager,
    Context,
    McpServer,
    ServerOptions,
    StreamableHTTPApp,
    serve,
)
from trio_mcp_sessions._cli import _parser, options_from
from trio_mcp_sessions._protocol._deadline import (
    MAX_REQUEST_TIME,
    REQUEST_TIMED_OUT,
    REQUEST_TIMEOUT,
    RequestDeadline,
    check_deadlines,
)
from trio_mcp_sessions._protocol._jsonrpc import Notification, Request, Response
from trio_mcp_sessions._serve import HEADER_TIMEOUT
from trio_mcp_sessions._stateless import SessionlessService
from trio_mcp_sessions.testing import open_test_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import StartServer

ROOT = Path(__file__).resolve().parent.parent


def make_server() -> tuple[McpServer, list[float]]:
    """Tools that hang, or report progress on a schedule; ``ended``: when each was cut."""
    server = McpServer("deadlines")
    ended: list[float] = []

    @server.tool()
    async def hang() -> str:
        """Never answers."""
        try:
            await trio.sleep_forever()
        finally:
            ended.append(trio.current_time())
        return "never"

    @server.tool()
    async def busy(ctx: Context, every: float, times: int = 1_000_000) -> str:
        """Reports progress every *every* seconds, *times* times, then hangs."""
        try:
            for step in range(times):
                await trio.sleep(every)
                await ctx.report_progress(step + 1)
            await trio.sleep_forever()
        finally:
            ended.append(trio.current_time())
        return "never"

    @server.tool()
    async def quick() -> str:
        """Answers at once."""
        return "quick"

    @server.prompt()
    async def stuck() -> str:
        """A prompt that never renders."""
        await trio.sleep_forever()
        return "never"

    return server, ended


def text_of(result: dict[str, Any]) -> str:
    text: str = result["content"][0]["text"]
    return text


# -- the arithmetic, without trio ---------------------------------------------------------


def test_the_deadline_starts_at_the_timeout_and_progress_never_passes_the_maximum() -> None:
    deadline = RequestDeadline(100.0, request_timeout=60, max_request_time=200)
    assert (deadline.deadline, deadline.hard_deadline) == (160, 300)
    assert deadline.progress(150) == 210
    assert deadline.progress(149) == 210  # never back
    assert deadline.progress(290) == 300  # never past the maximum
    assert deadline.ran_for == 200
    assert not deadline.expired
    unbounded = RequestDeadline(0.0, request_timeout=math.inf, max_request_time=math.inf)
    assert unbounded.progress(1e9) == math.inf


@given(
    timeout=st.floats(0.001, 1e4),
    extra=st.floats(0, 1e5),
    steps=st.lists(st.floats(0, 1e4), max_size=50),
)
def test_progress_only_ever_moves_the_deadline_on_and_up_to_the_maximum(
    timeout: float, extra: float, steps: list[float]
) -> None:
    deadline = RequestDeadline(0.0, request_timeout=timeout, max_request_time=timeout + extra)
    now = 0.0
    for step in steps:
        before = deadline.deadline
        if now >= before:
            break  # expired: nothing reports progress any more
        now += step
        after = deadline.progress(now)
        assert before <= after <= deadline.hard_deadline
        assert after == min(max(before, now + timeout), deadline.hard_deadline)


@pytest.mark.parametrize(
    ("timeout", "maximum", "error", "message"),
    [
        (0, 10, ValueError, "request_timeout must be positive"),
        (-1, 10, ValueError, "request_timeout must be positive"),
        (math.nan, 10, ValueError, "request_timeout must be positive"),
        ("60", 600, TypeError, "request_timeout must be a number of seconds"),
        (True, 600, TypeError, "request_timeout must be a number of seconds"),
        (60, 0, ValueError, "max_request_time must be positive"),
        (60, 30, ValueError, r"max_request_time \(30 s\) must be at least request_timeout"),
    ],
)
def test_invalid_deadlines_are_refused_clearly(
    timeout: object, maximum: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_deadlines(timeout, maximum)
    with pytest.raises(error, match=message):
        ServerOptions(request_timeout=timeout, max_request_time=maximum)  # type: ignore[arg-type]


def test_the_defaults_and_the_command_line() -> None:
    options = ServerOptions()
    assert (options.request_timeout, options.max_request_time) == (60, 600)
    assert (REQUEST_TIMEOUT, MAX_REQUEST_TIME) == (60, 600)
    args = _parser().parse_args(
        ["serve", "m:s", "--request-timeout", "5", "--max-request-time", "50"]
    )
    assert options_from(args) == ServerOptions(request_timeout=5, max_request_time=50)
    too_short = _parser().parse_args(["serve", "m:s", "--request-timeout", "900"])
    with pytest.raises(SystemExit, match=r"max_request_time .* must be at least request_timeout"):
        options_from(too_short)


def test_the_body_deadline_s_default_and_command_line() -> None:
    assert ServerOptions().body_timeout == 30
    with pytest.raises(ValueError, match="body_timeout must be positive"):
        ServerOptions(body_timeout=0)
    args = _parser().parse_args(["serve", "m:s", "--body-timeout", "7"])
    assert options_from(args) == ServerOptions(body_timeout=7)


def test_the_header_deadline_s_default_and_command_line() -> None:
    assert _parser().parse_args(["serve", "m:s"]).header_timeout == HEADER_TIMEOUT == 5
    assert _parser().parse_args(["serve", "m:s", "--header-timeout", "3"]).header_timeout == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--header-timeout", "0"], "header_timeout must be positive"),
        (["--request-timeout", "900"], "must be at least request_timeout (900 s)"),
    ],
)
def test_the_command_line_refuses_invalid_deadlines_clearly(args: list[str], message: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_mcp_sessions",
            "serve",
            "examples/notes_server.py:server",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- the sessionless service ----------------------------------------------------------------


@asynccontextmanager
async def sessionless(server: McpServer, **options: Any) -> AsyncIterator[SessionlessService]:
    service = SessionlessService(server, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        await service.aclose()


async def answer(service: SessionlessService, request: Any) -> tuple[list[Any], int | None]:
    exchange = service.open_request(request, INFO, notifications=True)
    with trio.fail_after(1000):  # the test fails, never hangs, without a deadline
        events = [json.loads(event.data) async for event in exchange.stream]
    return events, exchange.error_code


async def test_a_sessionless_tool_over_its_deadline_answers_is_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ended = make_server()
    async with sessionless(server) as service:
        start = trio.current_time()
        [reply], code = await answer(service, modern("tools/call", {"name": "hang"}))
        assert ended == [start + 60]
        assert code is None
        result = reply["result"]
        assert result["isError"] is True
        assert result["resultType"] == "complete"  # still a complete 2026-07-28 result
        assert "io.modelcontextprotocol/serverInfo" in result["_meta"]
        assert "'hang' timed out after 60 s" in text_of(result)
        [reply], _ = await answer(service, modern("tools/call", {"name": "quick"}, request_id=2))
        assert text_of(reply["result"]) == "quick"
        stats = service.statistics()
        assert (stats.timed_out, stats.answered, stats.cancelled, stats.errors) == (1, 2, 0, 0)
        assert stats.requests_in_flight == 0


async def test_another_method_over_its_deadline_answers_a_json_rpc_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, _ = make_server()
    async with sessionless(server, request_timeout=5, max_request_time=5) as service:
        [reply], code = await answer(service, modern("prompts/get", {"name": "stuck"}))
        assert trio.current_time() == 5
        assert code == REQUEST_TIMED_OUT
        error = reply["error"]
        assert error["code"] == REQUEST_TIMED_OUT
        assert error["message"].startswith("Request timed out after 5 s")
        assert error["data"] == {"timeout": 5}
        stats = service.statistics()
        assert (stats.timed_out, stats.errors, stats.cancelled) == (1, 1, 0)


async def test_progress_extends_the_deadline_but_never_past_the_maximum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ended = make_server()
    async with sessionless(server, request_timeout=60, max_request_time=200) as service:
        # Progress every 50 s would keep it alive for ever: the maximum cuts it at 200.
        start = trio.current_time()
        request = modern("tools/call", {"name": "busy", "arguments": {"every": 50}})
        assert request.message.params is not None
        request.message.params["_meta"]["progressToken"] = "p"
        events, _ = await answer(service, request)
        assert ended == [start + 200]
        *progress, reply = events
        assert [p["params"]["progress"] for p in progress] == [1, 2, 3]  # at 50, 100, 150
        assert "timed out after 200 s" in text_of(reply["result"])
        # One report at 50 s: the deadline moves to 110 s, then nothing more.
        start = trio.current_time()
        params = {"name": "busy", "arguments": {"every": 50, "times": 1}}
        [reply], _ = await answer(service, modern("tools/call", params, request_id=2))
        assert ended[1] == start + 110
        assert "timed out after 110 s" in text_of(reply["result"])
        assert service.statistics().timed_out == 2


async def test_a_client_that_leaves_is_cancelled_not_timed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ended = make_server()
    async with sessionless(server) as service:
        exchange = service.open_request(
            modern("tools/call", {"name": "hang"}), INFO, notifications=True
        )
        await trio.sleep(59)
        exchange.stream.detach()  # the client's response went away: nothing more is sent
        await trio.testing.wait_all_tasks_blocked()
        assert ended == [59]
        stats = service.statistics()
        assert (stats.cancelled, stats.timed_out, stats.answered) == (1, 0, 0)


def test_the_service_refuses_a_maximum_below_the_timeout() -> None:
    with pytest.raises(ValueError, match="must be at least request_timeout"):
        SessionlessService(McpServer("x"), request_timeout=10, max_request_time=5)


# -- a session ------------------------------------------------------------------------------


async def test_a_session_s_handlers_have_the_same_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ended = make_server()
    options = ServerOptions(request_timeout=10, max_request_time=25)
    with trio.fail_after(1000):
        await _session_deadlines(server, options, ended)


async def _session_deadlines(server: McpServer, options: ServerOptions, ended: list[float]) -> None:
    async with BoundedSessionManager(server, options=options) as manager:
        session_id = await open_session(manager)
        start = trio.current_time()
        stream = await manager.create_stream(session_id, [call(2, "hang")], INFO, "sse")
        [data] = await drain(stream)
        reply = json.loads(data)
        assert ended == [start + 10]
        assert reply["result"]["isError"] is True
        assert "resultType" not in reply["result"]  # the session era's result, unchanged
        assert "'hang' timed out after 10 s" in text_of(reply["result"])
        # Progress every 8 s: pushed on each time, cut at the maximum.
        start = trio.current_time()
        stream = await manager.create_stream(session_id, [call(3, "busy", every=8)], INFO, "sse")
        [data] = await drain(stream)
        assert ended[1] == start + 25
        assert "timed out after 25 s" in text_of(json.loads(data)["result"])
        # Any other method: a JSON-RPC error.
        request = Request(4, "prompts/get", {"name": "stuck"})
        [data] = await drain(await manager.create_stream(session_id, [request], INFO, "sse"))
        assert json.loads(data)["error"]["code"] == REQUEST_TIMED_OUT
        stats = manager.session_statistics(session_id)
        assert stats is not None
        assert stats.timed_out == 3
        assert manager.statistics().timed_out == 3
        # notifications/cancelled cancels without an answer, and is no timeout.
        stream = await manager.create_stream(session_id, [call(5, "hang")], INFO, "sse")
        await trio.sleep(1)
        cancel = Notification("notifications/cancelled", {"requestId": 5})
        await manager.accept_messages(session_id, [cancel], INFO)
        assert await drain(stream) == []
        assert manager.statistics().timed_out == 3
        # A closed session's count stays in the manager's.
        await manager.close_session(session_id)
        assert manager.get_session(session_id) is None
        assert manager.statistics().timed_out == 3


async def test_a_question_for_the_client_is_not_cut_by_the_handler_s_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A human answering an elicitation has the question's own time; the answer is progress."""
    server = McpServer("ask")
    ended: list[str] = []

    @server.tool()
    async def ask(ctx: Context, wait: float) -> str:
        """Ask the client, then work 8 s more."""
        try:
            await ctx.request("ping", timeout=wait)
            await trio.sleep(8)
        finally:
            ended.append(f"{trio.current_time() - start:g}")
        return "answered"

    options = ServerOptions(request_timeout=10, max_request_time=100)
    async with BoundedSessionManager(server, options=options) as manager:
        session_id = await open_session(manager)
        start = trio.current_time()
        stream = await manager.create_stream(session_id, [call(2, "ask", wait=50)], INFO, "sse")
        question = json.loads((await stream.__anext__()).data)
        assert question["method"] == "ping"
        await trio.sleep(40)  # over request_timeout, within the question's own 50 s
        answer = Response(question["id"], {})
        await manager.accept_messages(session_id, [answer], INFO)
        [data] = await drain(stream)
        assert json.loads(data)["result"]["content"][0]["text"] == "answered"
        assert ended == ["48"]
        # A question's wait never goes past max_request_time.
        start = trio.current_time()
        stream = await manager.create_stream(session_id, [call(3, "ask", wait=500)], INFO, "sse")
        await stream.__anext__()  # the question, never answered
        [data] = await drain(stream)
        assert "timed out after 100 s" in text_of(json.loads(data)["result"])
        assert ended[1] == "100"


def test_a_wait_for_the_client_moves_the_deadline_on_never_past_the_maximum() -> None:
    deadline = RequestDeadline(0.0, request_timeout=10, max_request_time=100)
    assert deadline.waiting(5.0, 50) == 55.0
    assert deadline.waiting(6.0, 1) == 55.0  # never back
    assert deadline.waiting(7.0, 500) == 100.0


# -- real HTTP --------------------------------------------------------------------------------

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def test_a_tool_over_its_deadline_answers_is_error_over_http(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The HTTP answer and the metrics, through the app in process (the test kit)."""
    server, ended = make_server()
    app = StreamableHTTPApp(server, request_timeout=30, max_request_time=30, metrics_path="/m")
    async with open_test_client(app, protocol_version="2026-07-28") as client:
        start = trio.current_time()
        response = await client.request("tools/call", {"name": "hang"}, name="hang")
        took = trio.current_time() - start
        metrics = (await client.send("GET", path="/m")).body.decode()
    assert response.status == 200
    [reply] = response.messages
    assert took == 30  # the server's deadline, to the mock clock's tick
    assert reply["id"] == 1
    assert reply["result"]["isError"] is True
    assert "'hang' timed out after 30 s" in text_of(reply["result"])
    assert ended == [start + 30]
    assert app.sessionless is not None
    assert app.sessionless.statistics().timed_out == 1
    assert "mcp_sessionless_timed_out_total 1.0" in metrics
    assert "mcp_requests_timed_out_total 0.0" in metrics


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def _read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:  # a reset after the answer
        pass
    return data


async def test_a_body_that_trickles_gets_408_and_the_connection_closes(
    autojump_clock: trio.testing.MockClock, start_server: StartServer
) -> None:
    autojump_clock.autojump_threshold = 0.01
    server, _ = make_server()
    app = StreamableHTTPApp(server, body_timeout=20)
    url = await start_server(app)
    port = _port(url)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    async with stream, trio.open_nursery() as nursery:
        await stream.send_all(head)
        start = trio.current_time()

        async def trickle() -> None:
            try:
                for _ in range(1000):  # a byte every 2 s: 2000 s for the whole body
                    await stream.send_all(b" ")
                    await trio.sleep(2)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        nursery.start_soon(trickle)
        data = await _read_all(stream)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 408 "
    assert "connection: close" in [line.lower() for line in lines[1:]]
    error = json.loads(body)
    assert error["error"]["code"] == -32000
    assert "did not arrive within 20 s" in error["error"]["message"]
    assert error["error"]["data"] == {"body_timeout": 20}
    assert 20 <= took < 21  # the answer, then the connection's end: at once
    assert app.statistics().refused_by_status == {408: 1}


async def test_over_http2_the_408_ends_only_its_stream(
    autojump_clock: trio.testing.MockClock, start_server: StartServer
) -> None:
    # HTTP/2 has no Connection header (Hypercorn's h2 drops it): the
    # connection goes on serving its other streams.
    autojump_clock.autojump_threshold = 0.01
    server, _ = make_server()
    url = await start_server(StreamableHTTPApp(server, body_timeout=20))
    sent_at: list[float] = []

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc"'
        await trio.sleep(22)  # past the deadline; before the idle connection's (5 s) ends it
        sent_at.append(trio.current_time())
        yield b': "2.0"}'

    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with trio.fail_after(2000):
        async with httpx.AsyncClient(http1=False, http2=True, timeout=None) as http:
            slow = await http.post(url, content=slow_body(), headers=headers)
            after = await http.post(url, json=initialize_body(), headers=headers)
            ports = [
                r.extensions["network_stream"].get_extra_info("client_addr") for r in (slow, after)
            ]
    assert ports[0] == ports[1]  # one connection for both
    assert slow.http_version == "HTTP/2"
    assert slow.status_code == 408
    assert "did not arrive within 20 s" in slow.json()["error"]["message"]
    assert "connection" not in slow.headers
    assert after.status_code == 200
    assert after.http_version == "HTTP/2"
    assert sent_at == [pytest.approx(22, abs=0.5)]


async def test_a_body_that_arrives_in_time_is_served(
    autojump_clock: trio.testing.MockClock, start_server: StartServer
) -> None:
    autojump_clock.autojump_threshold = 0.01
    server, _ = make_server()
    url = await start_server(StreamableHTTPApp(server, body_timeout=20))
    port = _port(url)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "quick", "_meta": MODERN_META},
        }
    ).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json, "
        "text/event-stream\r\nContent-Type: application/json\r\nMcp-Protocol-Version: "
        "2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: quick\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(head)
        half = len(body) // 2
        await stream.send_all(body[:half])
        await trio.sleep(19)  # slow, but within the deadline
        await stream.send_all(body[half:])
        data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b'"text":"quick"' in data


async def test_serve_cuts_a_connection_that_trickles_its_headers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Hypercorn's idle timer (keep_alive_timeout) runs until a request's headers
    # are complete; serve(header_timeout=) sets it.
    autojump_clock.autojump_threshold = 0.01
    server, _ = make_server()
    stop = trio.Event()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(
                partial(
                    serve,
                    server,
                    bind="127.0.0.1:0",
                    header_timeout=3,
                    graceful_timeout=0.5,
                    shutdown_trigger=stop.wait,
                )
            )
            port = _port(url)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            start = trio.current_time()
            async with stream, trio.open_nursery() as client:

                async def trickle() -> None:
                    try:
                        await stream.send_all(b"POST /mcp HTTP/1.1\r\n")
                        for _ in range(1000):  # a header byte a second, never the end
                            await trio.sleep(1)
                            await stream.send_all(b"X")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                client.start_soon(trickle)
                data = await _read_all(stream)
                took = trio.current_time() - start
                client.cancel_scope.cancel()
            stop.set()
    assert data == b""  # no request began: closed without an answer
    assert 3 <= took < 4


@pytest.mark.parametrize("after_preface", ["nothing", "a trickled HEADERS frame"])
async def test_serve_cuts_an_http2_connection_that_sends_no_request_in_time(
    autojump_clock: trio.testing.MockClock, after_preface: str
) -> None:
    # HTTP/2 with prior knowledge (h2c) starts in Hypercorn's HTTP/1.1 parser,
    # which stopped the idle timer at the preface: without the guard in
    # _hypercorn_h2 this connection stays open for ever.
    import h2.config
    import h2.connection
    from hpack import Encoder, NeverIndexedHeaderTuple
    from hyperframe.frame import HeadersFrame

    autojump_clock.autojump_threshold = 0.01
    server, _ = make_server()
    stop = trio.Event()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(
                partial(
                    serve,
                    server,
                    bind="127.0.0.1:0",
                    header_timeout=3,
                    graceful_timeout=0.5,
                    shutdown_trigger=stop.wait,
                )
            )
            stream = await trio.open_tcp_stream("127.0.0.1", _port(url))
            connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            connection.initiate_connection()
            headers = [
                (":method", "GET"),
                (":path", "/mcp"),
                (":scheme", "http"),
                (":authority", "x"),
            ]
            block = Encoder().encode([NeverIndexedHeaderTuple(k, v) for k, v in headers])
            frame = HeadersFrame(1, block, flags=["END_HEADERS", "END_STREAM"]).serialize()
            async with stream, trio.open_nursery() as client:
                await stream.send_all(connection.data_to_send())
                start = trio.current_time()

                async def trickle() -> None:
                    try:
                        for byte in range(len(frame) - 1):  # a byte a second, never the last
                            await stream.send_all(frame[byte : byte + 1])
                            await trio.sleep(1)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                if after_preface != "nothing":
                    client.start_soon(trickle)
                await _read_all(stream)  # the server's SETTINGS, then its end
                took = trio.current_time() - start
                client.cancel_scope.cancel()
            stop.set()
    assert 3 <= took < 4
