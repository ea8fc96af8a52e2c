"""Interop: our server against the official ``mcp`` Python SDK client (2.3.0).

Every test runs a real Hypercorn (trio worker) and drives it with
``mcp.client.Client`` over Streamable HTTP, in ``legacy`` mode (the
initialize handshake: a 2025-11-25 session) and in ``auto`` mode, the SDK's
default, which probes ``server/discover`` and, since we offer it, speaks
2026-07-28 with us: no session, every request carries its ``_meta``, and what
a handler asks the client (sampling, elicitation, roots) travels as
input-required rounds that the SDK answers with the same callbacks. Where the
reply mode matters, both reply modes are run.

In ``json`` reply mode a session's server-to-client messages travel on the
GET stream, which the SDK opens in the background after ``initialized``;
session tests that need those messages first wait until the GET stream
demonstrably delivers (see :func:`connected`). At 2026-07-28 there is no GET
stream: questions are results, and notifications (progress, logs) need an
SSE response, which ``json`` reply mode never gives.

The same scenario also runs with the client on anyio's asyncio backend
(:func:`test_end_to_end_on_each_backend`). The TypeScript SDK's client is
tests/test_interop_ts.py's.
"""

from __future__ import annotations

import base64
import functools
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import httpx2
import mcp_types as types
import pytest
import sniffio
import trio
from mcp.client import Client, ClientRequestContext, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.exceptions import MCPError as SdkError
from pydantic import FileUrl

from _harness import manager_of, wait_until
from conftest import INIT_HEADERS, StartServer, TracebackRecorder
from trio_mcp_sessions import (
    CapabilityNotSupported,
    ClientRequestError,
    Context,
    InputRequest,
    McpHeader,
    McpServer,
    StreamableHTTPApp,
    ToolError,
    embedded_resource,
    image_content,
    text_content,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from mcp.client import Transport
    from mcp.client._transport import TransportStreams

    from trio_mcp_sessions._stateless import SessionlessStatistics

# The SDK's HTTP stack (httpx2/httpcore2) abandons the async generators of the
# SSE responses it stops reading; under trio that is a ResourceWarning from the
# client library, not from our server.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpx2\.:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Async generator 'httpcore2\.:ResourceWarning"),
]

Mode = Literal["legacy", "auto"]
ReplyMode = Literal["sse", "json"]
MODES = pytest.mark.parametrize("mode", ["legacy", "auto"])
REPLY_MODES = pytest.mark.parametrize("reply_mode", ["sse", "json"])

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
TIMEOUT = 5.0
#: What each mode negotiates with us.
HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
VERSION_OF: dict[Mode, str] = {"legacy": HANDSHAKE, "auto": MODERN}


# -- the server under test -----------------------------------------------------------


@dataclass
class Probe:
    """Lets a test observe what happened inside the server's handlers."""

    started: trio.Event = field(default_factory=trio.Event)
    cancelled: trio.Event = field(default_factory=trio.Event)


def make_server(probe: Probe | None = None) -> McpServer:
    server = McpServer("interop-server", "1.2.3", instructions="Be nice.")
    probe = probe if probe is not None else Probe()

    @server.tool()
    async def add(a: int, b: int = 2) -> int:
        """Add two integers.

        Args:
            a: The first addend.
            b: The second addend.
        """
        return a + b

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with *reason*."""
        raise ToolError(reason)

    @server.tool()
    def media() -> list[dict[str, Any]]:
        """Mixed content."""
        return [
            text_content("caption"),
            image_content(PNG, "image/png"),
            embedded_resource("mem://inline", text="inline body", mime_type="text/plain"),
        ]

    @server.tool()
    def stats(values: list[int]) -> dict[str, Any]:
        """Structured output."""
        return {"count": len(values), "total": sum(values)}

    @server.tool()
    async def count_up(steps: int, ctx: Context) -> str:
        """Report progress once per step."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await trio.sleep(0.01)
        return f"counted to {steps}"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Log at three levels."""
        await ctx.debug("debug line")
        await trio.sleep(0.01)
        await ctx.info("info line", logger="interop")
        await trio.sleep(0.01)
        await ctx.warning({"code": 7})
        return "logged"

    @server.tool()
    async def ask_model(prompt: str, ctx: Context) -> str:
        """Ask the client's model (sampling)."""
        try:
            result = await ctx.sample(
                prompt, max_tokens=64, system_prompt="be brief", timeout=TIMEOUT
            )
        except CapabilityNotSupported as exc:
            raise ToolError(f"sampling unavailable: {exc}") from exc
        except ClientRequestError as exc:  # the client's callback said no
            raise ToolError(f"sampling refused ({exc.code}): {exc.message}") from exc
        return f"{result['model']} says {result['content']['text']}"

    @server.tool()
    async def ask_user(question: str, ctx: Context) -> dict[str, Any]:
        """Ask the user for a name (elicitation)."""
        try:
            answer = await ctx.elicit(question, NAME_SCHEMA, timeout=TIMEOUT)
        except CapabilityNotSupported as exc:
            raise ToolError(f"elicitation unavailable: {exc}") from exc
        return {"action": answer["action"], "content": answer.get("content")}

    @server.tool()
    async def roots(ctx: Context) -> str:
        """The client's roots, one ``name=uri`` per line."""
        try:
            found = await ctx.list_roots(timeout=TIMEOUT)
        except CapabilityNotSupported as exc:
            raise ToolError(f"roots unavailable: {exc}") from exc
        return "\n".join(f"{r.get('name')}={r['uri']}" for r in found)

    @server.tool()
    async def interview(ctx: Context) -> str:
        """Ask the user, then the model about the answer: two questions in a row."""
        await ctx.report_progress(1, 3, "asking the user")
        answer = await ctx.elicit("Your name?", NAME_SCHEMA, timeout=TIMEOUT)
        name = answer["content"]["name"]
        await ctx.report_progress(2, 3, "asking the model")
        reply = await ctx.sample(f"a poem for {name}", max_tokens=32, timeout=TIMEOUT)
        await ctx.report_progress(3, 3, "done")
        return f"{name}: {reply['content']['text']}"

    @server.tool()
    async def survey(ctx: Context) -> str:
        """Ask three questions at once."""
        answers = await ctx.request_input(
            {
                "who": InputRequest.elicitation("Your name?", NAME_SCHEMA),
                "model": InputRequest.sampling("say hi", max_tokens=8),
                "where": InputRequest.roots(),
            },
            timeout=TIMEOUT,
        )
        roots = ",".join(r["uri"] for r in answers["where"]["roots"])
        return f"{answers['who']['content']['name']}|{answers['model']['content']['text']}|{roots}"

    @server.tool()
    async def wait_forever() -> str:
        """Never returns; records its cancellation."""
        probe.started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            probe.cancelled.set()
            raise

    @server.tool()
    async def poll_me(ctx: Context) -> str:
        """Ends its SSE response half-way (SEP-1699); the client must resume."""
        await ctx.report_progress(1, 2, "before")
        ctx.close_sse_stream()
        await trio.sleep(0.1)
        await ctx.report_progress(2, 2, "after")
        return "resumed"

    @server.tool()
    async def ping_client(ctx: Context) -> str:
        """Ping the client."""
        await ctx.ping(timeout=TIMEOUT)
        return "pong"

    @server.tool()
    async def nudge(ctx: Context) -> str:
        """Say that the tool list changed, on this request's stream (json mode: the GET stream)."""
        await ctx.notify("notifications/tools/list_changed")
        return "nudged"

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The MCP session id this call arrived on."""
        return ctx.session_id or "none"

    @server.tool()
    def routed(
        region: Annotated[str, McpHeader("Region")],
        replicas: Annotated[int, McpHeader("Replicas")] = 1,
    ) -> str:
        """Mirrors its parameters into Mcp-Param-* headers (2026-07-28)."""
        return f"{region} x{replicas}"

    @server.tool()
    async def slow_add(a: int, b: int, delay: float) -> int:
        """Add after sleeping."""
        await trio.sleep(delay)
        return a + b

    @server.resource("mem://greeting", mime_type="text/plain", description="A greeting.")
    def greeting() -> str:
        return "hello, world"

    @server.resource("mem://logo.png", mime_type="image/png")
    def logo() -> bytes:
        return PNG

    @server.resource("mem://users/{user_id}/profile", mime_type="text/plain")
    def profile(user_id: str) -> str:
        """A user's profile."""
        return f"profile of user {user_id}"

    @server.prompt()
    def greet(name: str, style: str = "plain") -> str:
        """Greet someone.

        Args:
            name: Who to greet.
            style: How to greet.
        """
        return f"Say hello to {name} in a {style} style."

    @server.prompt()
    async def personal(ctx: Context) -> str:
        """A prompt for whoever the user says they are."""
        answer = await ctx.elicit("Who is asking?", NAME_SCHEMA, timeout=TIMEOUT)
        return f"Write to {answer['content']['name']}."

    @server.resource("mem://roots", mime_type="text/plain")
    async def root_list(ctx: Context) -> str:
        """The client's roots, as a resource."""
        return "\n".join(r["uri"] for r in await ctx.list_roots(timeout=TIMEOUT))

    @server.completion()
    def complete(ref: dict[str, Any], argument: dict[str, Any], context: Any) -> list[str]:
        if ref.get("name") == "greet" and argument.get("name") == "style":
            options = ["formal", "friendly", "plain"]
            return [o for o in options if o.startswith(str(argument.get("value", "")))]
        return []

    return server


# -- helpers -------------------------------------------------------------------------


async def serve(
    start_server: StartServer,
    reply_mode: ReplyMode = "sse",
    probe: Probe | None = None,
    **options: Any,
) -> tuple[StreamableHTTPApp, str]:
    app = StreamableHTTPApp(make_server(probe), reply_mode=reply_mode, **options)
    return app, await start_server(app)


@dataclass
class Inbox:
    """A ``message_handler``: records the notifications the SDK surfaces."""

    messages: list[Any] = field(default_factory=list)

    async def __call__(self, message: IncomingMessage) -> None:
        if not isinstance(message, Exception):
            self.messages.append(message)

    def seen(self, kind: type[Any]) -> bool:
        return any(isinstance(m, kind) for m in self.messages)


def sdk_client(
    server: str | Transport, mode: Mode, inbox: Inbox | None = None, **callbacks: Any
) -> Client:
    return Client(
        server,
        mode=mode,
        message_handler=inbox if inbox is not None else Inbox(),
        cache=None,  # every call must reach the server
        read_timeout_seconds=TIMEOUT,
        **callbacks,
    )


def is_modern(client: Client) -> bool:
    return client.protocol_version == MODERN


async def connected(
    app: StreamableHTTPApp, reply_mode: ReplyMode, inbox: Inbox, client: Client
) -> None:
    """In json reply mode on a session, wait until the client's GET stream delivers.

    Server-to-client messages emitted before the SDK's background GET is
    attached are not delivered; broadcasting until one arrives removes that
    race from the tests (in sse mode they travel on the POST's response). At
    2026-07-28 there is no GET stream to wait for.
    """
    if reply_mode != "json" or is_modern(client):
        return
    with trio.fail_after(TIMEOUT):
        while not inbox.seen(types.ToolListChangedNotification):
            await manager_of(app).notify_all("notifications/tools/list_changed")
            await trio.sleep(0.02)


async def set_level(client: Client, level: types.LoggingLevel) -> None:
    # Deprecated as of 2026-07-28, still the way on a 2025-11-25 session.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.set_logging_level(level)


def only_text(result: types.CallToolResult) -> str:
    assert len(result.content) == 1, result.content
    block = result.content[0]
    assert isinstance(block, types.TextContent), block
    return block.text


def sessionless(app: StreamableHTTPApp) -> SessionlessStatistics:
    assert app.sessionless is not None
    return app.sessionless.statistics()


def assert_input_rounds(app: StreamableHTTPApp, mode: Mode, rounds: int) -> None:
    """Auto mode asked the client through *rounds* input-required results; legacy through none."""
    assert sessionless(app).input_required == (rounds if mode == "auto" else 0)


async def wait_all_closed(app: StreamableHTTPApp, expected_created: int, mode: Mode) -> None:
    """Legacy: *expected_created* sessions, all ended by the client's DELETE; auto: none at all."""
    manager = manager_of(app)
    await wait_until(lambda: manager.statistics().live_sessions == 0)
    stats = manager.statistics()
    if mode == "auto":
        # 2026-07-28 is sessionless: nothing was ever created, nothing is left.
        assert stats.created == 0
        assert stats.closed_by_reason == {}
        await wait_until(lambda: sessionless(app).requests_in_flight == 0)
        return
    assert stats.created == expected_created
    assert stats.closed == expected_created
    # Closed by the client's DELETE, not by a timeout or an error.
    assert stats.closed_by_reason == {"deleted": expected_created}


# -- 1. connecting -------------------------------------------------------------------


@MODES
async def test_connect_negotiates_the_version(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    """Auto mode lands on 2026-07-28 through ``server/discover``; legacy gets a session."""
    app, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            assert client.protocol_version == VERSION_OF[mode]
            assert client.server_info is not None
            assert client.server_info.name == "interop-server"
            assert client.server_info.version == "1.2.3"
            assert client.instructions == "Be nice."
            caps = client.server_capabilities
            assert caps.tools is not None
            assert caps.resources is not None
            assert caps.prompts is not None
            assert caps.logging is not None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                if mode == "legacy":
                    assert client.session.initialize_result is not None
                    assert client.session.discover_result is None
                    await client.send_ping()
                    assert manager_of(app).statistics().live_sessions == 1
                else:
                    discovered = client.session.discover_result
                    assert discovered is not None
                    assert client.session.initialize_result is None
                    assert MODERN in discovered.supported_versions
                    # ping is removed at 2026-07-28: 404 + -32601.
                    with pytest.raises(SdkError) as removed:
                        await client.send_ping()
                    assert removed.value.code == -32601
                    assert manager_of(app).statistics().live_sessions == 0
    await wait_all_closed(app, 1, mode)
    assert not tracebacks.records, tracebacks.describe()


# -- 2. tools/list -------------------------------------------------------------------


@MODES
async def test_tools_list_schema_from_type_hints(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    _, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            listed = await client.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert {"add", "fail", "media", "count_up", "ask_model", "roots"} <= set(tools)
    add = tools["add"]
    assert add.description == "Add two integers."
    schema = add.input_schema
    assert schema["type"] == "object"
    assert schema["properties"]["a"] == {"type": "integer", "description": "The first addend."}
    assert schema["properties"]["b"]["type"] == "integer"
    assert schema["properties"]["b"]["default"] == 2
    assert schema["required"] == ["a"]
    # The Context parameter is not part of the schema.
    count_up = tools["count_up"].input_schema
    assert set(count_up["properties"]) == {"steps"}
    assert count_up["required"] == ["steps"]
    assert tools["whoami"].input_schema["properties"] == {}
    assert not tracebacks.records, tracebacks.describe()


# -- 3. tools/call -------------------------------------------------------------------


@MODES
@REPLY_MODES
async def test_call_tool_results(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    _, url = await serve(start_server, reply_mode)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            result = await client.call_tool("add", {"a": 40})
            assert not result.is_error
            assert only_text(result) == "42"

            failed = await client.call_tool("fail", {"reason": "disk on fire"})
            assert failed.is_error is True
            assert only_text(failed) == "disk on fire"

            invalid = await client.call_tool("add", {"a": "forty"})
            assert invalid.is_error is True
            assert "Invalid arguments" in only_text(invalid)

            structured = await client.call_tool("stats", {"values": [1, 2, 3]})
            assert not structured.is_error
            assert structured.structured_content == {"count": 3, "total": 6}

            media = await client.call_tool("media", {})
            text, image, embedded = media.content
            assert isinstance(text, types.TextContent)
            assert text.text == "caption"
            assert isinstance(image, types.ImageContent)
            assert image.mime_type == "image/png"
            assert base64.b64decode(image.data) == PNG
            assert isinstance(embedded, types.EmbeddedResource)
            assert isinstance(embedded.resource, types.TextResourceContents)
            assert embedded.resource.text == "inline body"
            assert str(embedded.resource.uri) == "mem://inline"

            with pytest.raises(SdkError) as unknown:
                await client.call_tool("no_such_tool", {})
            assert unknown.value.code == -32602
    assert not tracebacks.records, tracebacks.describe()


def notifications_arrive(mode: Mode, reply_mode: ReplyMode) -> bool:
    """Whether progress and logs reach the client.

    A session's travel on the POST's SSE response or on the GET stream. At
    2026-07-28 they travel on the request's own SSE response, which a
    notification opens whatever the session era's ``reply_mode``.
    """
    return True


@MODES
@REPLY_MODES
async def test_progress_callback_receives_increasing_values(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    app, url = await serve(start_server, reply_mode)
    received: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, total, message))

    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("count_up", {"steps": 4}, progress_callback=on_progress)
            assert only_text(result) == "counted to 4"
            if notifications_arrive(mode, reply_mode):
                # The SDK hands each notification to its own task: allow them to land.
                await wait_until(lambda: len(received) >= 4)
            else:
                await trio.sleep(0.05)
    expected = [(float(i), 4.0, f"step {i}") for i in range(1, 5)]
    assert received == (expected if notifications_arrive(mode, reply_mode) else [])
    assert not tracebacks.records, tracebacks.describe()


@MODES
async def test_progress_without_callback_sends_nothing(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    _, url = await serve(start_server)
    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox) as client:
            result = await client.call_tool("count_up", {"steps": 3})
            assert only_text(result) == "counted to 3"
            await trio.sleep(0.05)
    assert not inbox.seen(types.ProgressNotification)
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
@pytest.mark.parametrize(
    ("level", "expected"),
    [("debug", ["debug", "info", "warning"]), ("warning", ["warning"])],
)
async def test_logging_callback_honours_the_level(
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    mode: Mode,
    reply_mode: ReplyMode,
    level: types.LoggingLevel,
    expected: list[str],
) -> None:
    """Legacy: ``logging/setLevel`` on the session; auto: ``logLevel`` in each request's meta."""
    app, url = await serve(start_server, reply_mode)
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    inbox = Inbox()
    per_request: dict[str, Any] = {"log_level": level} if mode == "auto" else {}
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, logging_callback=on_log, **per_request) as client:
            await connected(app, reply_mode, inbox, client)
            if mode == "legacy":
                await set_level(client, level)
            else:
                # logging/setLevel is removed at 2026-07-28: 404 + -32601.
                with pytest.raises(SdkError) as removed:
                    await set_level(client, level)
                assert removed.value.code == -32601
            result = await client.call_tool("chatty", {})
            assert only_text(result) == "logged"
            if notifications_arrive(mode, reply_mode):
                await wait_until(lambda: len(logs) >= len(expected))
            await trio.sleep(0.05)  # nothing more may arrive
    assert not tracebacks.records, tracebacks.describe()
    if not notifications_arrive(mode, reply_mode):
        assert logs == []
        return
    assert [entry.level for entry in logs] == expected
    by_level = {entry.level: entry for entry in logs}
    assert by_level["warning"].data == {"code": 7}
    if "info" in by_level:
        assert by_level["info"].data == "info line"
        assert by_level["info"].logger == "interop"


async def test_modern_request_without_log_level_gets_no_logs(
    start_server: StartServer, tracebacks: TracebackRecorder
) -> None:
    """At 2026-07-28 a request without ``logLevel`` in ``_meta`` gets no log message at all."""
    _, url = await serve(start_server)
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, "auto", logging_callback=on_log) as client:
            assert is_modern(client)
            assert only_text(await client.call_tool("chatty", {})) == "logged"
            await trio.sleep(0.05)
    assert logs == []
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
async def test_client_cancellation_reaches_the_handler(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    """Legacy: ``notifications/cancelled``; auto: the client drops the request's response."""
    probe = Probe()
    app, url = await serve(start_server, reply_mode, probe)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            # Caller-side cancellation.
            with trio.move_on_after(TIMEOUT / 2) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.call_tool, "wait_forever", {})
                    await probe.started.wait()
                    nursery.cancel_scope.cancel()
            assert not scope.cancelled_caught
            await probe.cancelled.wait()
            # The client can go on afterwards.
            assert only_text(await client.call_tool("add", {"a": 5})) == "7"

            # A read timeout also cancels on the server.
            probe.started, probe.cancelled = trio.Event(), trio.Event()
            with pytest.raises(SdkError) as timed_out:
                await client.call_tool("wait_forever", {}, read_timeout_seconds=0.2)
            assert timed_out.value.code == -32001  # the SDK's REQUEST_TIMEOUT
            await probe.cancelled.wait()
            assert only_text(await client.call_tool("add", {"a": 6})) == "8"
    await wait_all_closed(app, 1, mode)
    if mode == "auto":
        assert sessionless(app).cancelled == 2
    assert not tracebacks.records, tracebacks.describe()


@MODES
async def test_closed_sse_stream_is_resumed_by_the_client(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    """SEP-1699 polling: the server ends the response; the SDK resumes with Last-Event-ID.

    At 2026-07-28 there is nothing to resume from (no ``Last-Event-ID``), so
    ``close_sse_stream`` leaves the response open: the same handler works.
    """
    _, url = await serve(start_server, "sse", retry_ms=50)
    received: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, message))

    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            result = await client.call_tool("poll_me", {}, progress_callback=on_progress)
            assert only_text(result) == "resumed"
            await wait_until(lambda: len(received) >= 2)
    assert received == [(1.0, "before"), (2.0, "after")]
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
async def test_server_pings_client(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    """``ctx.ping`` is a server-to-client ``ping`` in a session; at 2026-07-28 (no ``ping``,
    no back-channel) it answers at once: the client is alive, it waits for this call."""
    app, url = await serve(start_server, reply_mode)
    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("ping_client", {})
    assert not result.is_error, result
    assert only_text(result) == "pong"
    assert not tracebacks.records, tracebacks.describe()


# -- 4. resources --------------------------------------------------------------------


@MODES
@REPLY_MODES
async def test_resources(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    _, url = await serve(start_server, reply_mode)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            listed = await client.list_resources()
            resources = {str(r.uri): r for r in listed.resources}
            assert set(resources) == {"mem://greeting", "mem://logo.png", "mem://roots"}
            assert resources["mem://greeting"].name == "greeting"
            assert resources["mem://greeting"].description == "A greeting."
            assert resources["mem://logo.png"].mime_type == "image/png"

            templates = await client.list_resource_templates()
            assert [t.uri_template for t in templates.resource_templates] == [
                "mem://users/{user_id}/profile"
            ]
            assert templates.resource_templates[0].description == "A user's profile."

            text = await client.read_resource("mem://greeting")
            (content,) = text.contents
            assert isinstance(content, types.TextResourceContents)
            assert content.text == "hello, world"
            assert content.mime_type == "text/plain"
            assert str(content.uri) == "mem://greeting"

            blob = await client.read_resource("mem://logo.png")
            (content_b,) = blob.contents
            assert isinstance(content_b, types.BlobResourceContents)
            assert base64.b64decode(content_b.blob) == PNG
            assert content_b.mime_type == "image/png"

            templated = await client.read_resource("mem://users/42/profile")
            (content_t,) = templated.contents
            assert isinstance(content_t, types.TextResourceContents)
            assert content_t.text == "profile of user 42"
            assert str(content_t.uri) == "mem://users/42/profile"

            with pytest.raises(SdkError) as missing:
                await client.read_resource("mem://nope")
            if mode == "legacy":
                assert missing.value.code == -32002
            else:  # SEP-2164: -32602 with the uri
                assert missing.value.code == -32602
                assert missing.value.error.data == {"uri": "mem://nope"}
    assert not tracebacks.records, tracebacks.describe()


@REPLY_MODES
async def test_resource_subscription_notifies_the_client(
    start_server: StartServer, tracebacks: TracebackRecorder, reply_mode: ReplyMode
) -> None:
    """Legacy only: ``resources/subscribe`` and the GET stream are a session's.

    2026-07-28 removed both; its way is ``subscriptions/listen``
    (:func:`test_listen_receives_changes`).
    """
    app, url = await serve(start_server, reply_mode)
    manager = manager_of(app)
    inbox = Inbox()

    def updated() -> list[str]:
        return [
            str(m.params.uri)
            for m in inbox.messages
            if isinstance(m, types.ResourceUpdatedNotification)
        ]

    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, "legacy", inbox) as client:
            await connected(app, "json", inbox, client)  # updates travel on the GET stream
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource("mem://greeting")
            assert await manager.notify_resource_updated("mem://logo.png") == 0
            assert await manager.notify_resource_updated("mem://greeting") == 1
            await wait_until(lambda: len(updated()) >= 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.unsubscribe_resource("mem://greeting")
            assert await manager.notify_resource_updated("mem://greeting") == 0
            await trio.sleep(0.05)
    assert updated() == ["mem://greeting"]
    assert not tracebacks.records, tracebacks.describe()


async def test_resource_subscribe_is_removed_at_2026(
    start_server: StartServer, tracebacks: TracebackRecorder
) -> None:
    """At 2026-07-28 ``resources/subscribe`` and ``unsubscribe`` answer 404 + -32601."""
    app, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, "auto") as client:
            assert is_modern(client)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                with pytest.raises(SdkError) as subscribe:
                    await client.subscribe_resource("mem://greeting")
                with pytest.raises(SdkError) as unsubscribe:
                    await client.unsubscribe_resource("mem://greeting")
    assert subscribe.value.code == unsubscribe.value.code == -32601
    assert manager_of(app).statistics().subscriptions == 0
    assert not tracebacks.records, tracebacks.describe()


async def test_listen_receives_changes(
    start_server: StartServer, tracebacks: TracebackRecorder
) -> None:
    """2026-07-28: ``Client.listen`` gets list-changed and resource-updated events.

    The same ``notify_all`` / ``notify_resource_updated`` that reach sessions
    reach listen streams; only what the filter asked for arrives.
    """
    app, url = await serve(start_server)
    manager = manager_of(app)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, "auto") as client:
            assert is_modern(client)
            async with client.listen(
                tools_list_changed=True, resource_subscriptions=["mem://greeting"]
            ) as subscription:
                assert subscription.honored.tools_list_changed is True
                assert subscription.honored.resource_subscriptions == ["mem://greeting"]
                await manager.notify_all("notifications/prompts/list_changed")  # not asked for
                await manager.notify_all("notifications/tools/list_changed")
                assert isinstance(await anext(subscription), ToolsListChanged)
                await manager.notify_resource_updated("mem://greeting")
                event = await anext(subscription)
                assert isinstance(event, ResourceUpdated)
                assert event.uri == "mem://greeting"
            # The client still works after it stopped listening.
            assert only_text(await client.call_tool("add", {"a": 1})) == "3"
    assert manager.statistics().created == 0
    assert not tracebacks.records, tracebacks.describe()


# -- 5. prompts and completion -------------------------------------------------------


@MODES
async def test_prompts_and_completion(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    _, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            listed = await client.list_prompts()
            prompts = {p.name: p for p in listed.prompts}
            assert set(prompts) == {"greet", "personal"}
            prompt = prompts["greet"]
            assert prompt.name == "greet"
            assert prompt.description == "Greet someone."
            assert prompt.arguments is not None
            arguments = {a.name: a for a in prompt.arguments}
            assert arguments["name"].required is True
            assert arguments["name"].description == "Who to greet."
            assert arguments["style"].required is False

            got = await client.get_prompt("greet", {"name": "Ada", "style": "formal"})
            (message,) = got.messages
            assert message.role == "user"
            assert isinstance(message.content, types.TextContent)
            assert message.content.text == "Say hello to Ada in a formal style."

            default = await client.get_prompt("greet", {"name": "Bob"})
            assert isinstance(default.messages[0].content, types.TextContent)
            assert default.messages[0].content.text == "Say hello to Bob in a plain style."

            with pytest.raises(SdkError) as missing:
                await client.get_prompt("greet", {})
            assert missing.value.code == -32602

            completed = await client.complete(
                types.PromptReference(type="ref/prompt", name="greet"),
                {"name": "style", "value": "f"},
            )
            assert completed.completion.values == ["formal", "friendly"]
            assert completed.completion.has_more is False
    assert not tracebacks.records, tracebacks.describe()


# -- 6. sampling and elicitation -----------------------------------------------------


@MODES
@REPLY_MODES
async def test_sampling_round_trip(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    app, url = await serve(start_server, reply_mode)
    seen: list[types.CreateMessageRequestParams] = []

    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        seen.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="forty-two"),
            model="test-model",
        )

    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, sampling_callback=sampling) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("ask_model", {"prompt": "meaning of life?"})
    assert not result.is_error, result
    assert only_text(result) == "test-model says forty-two"
    assert_input_rounds(app, mode, 1)
    (params,) = seen
    assert params.max_tokens == 64
    assert params.system_prompt == "be brief"
    (message,) = params.messages
    assert message.role == "user"
    assert isinstance(message.content, types.TextContent)
    assert message.content.text == "meaning of life?"
    assert not tracebacks.records, tracebacks.describe()


@MODES
async def test_sampling_refused_by_client_callback(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    app, url = await serve(start_server)

    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.ErrorData:
        return types.ErrorData(code=-1, message="user declined")

    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, sampling_callback=sampling) as client:
            if mode == "legacy":
                # The refusal is the answer to our request: the tool sees it.
                result = await client.call_tool("ask_model", {"prompt": "hi"})
                assert result.is_error is True
                assert only_text(result) == "sampling refused (-1): user declined"
            else:
                # An input response cannot be an error: the SDK's round driver
                # gives up on the call instead of retrying it.
                with pytest.raises(SdkError) as refused:
                    await client.call_tool("ask_model", {"prompt": "hi"})
                assert (refused.value.code, refused.value.error.message) == (-1, "user declined")
            assert only_text(await client.call_tool("add", {"a": 1})) == "3"
    assert_input_rounds(app, mode, 1)
    assert not tracebacks.records, tracebacks.describe()


@MODES
@pytest.mark.parametrize(
    ("tool", "arguments", "capability"),
    [
        ("ask_model", {"prompt": "hi"}, "sampling"),
        ("ask_user", {"question": "name?"}, "elicitation"),
        ("roots", {}, "roots"),
    ],
)
async def test_server_request_without_client_capability(
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    mode: Mode,
    tool: str,
    arguments: dict[str, Any],
    capability: str,
) -> None:
    """Legacy: ``CapabilityNotSupported`` in the handler; auto: -32021 (HTTP 400)."""
    app, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:  # no callbacks: no capabilities
            if mode == "legacy":
                result = await client.call_tool(tool, arguments)
                assert result.is_error is True
                assert only_text(result) == (
                    f"{capability} unavailable: "
                    f"the client did not declare the {capability!r} capability"
                )
            else:
                with pytest.raises(SdkError) as missing:
                    await client.call_tool(tool, arguments)
                assert missing.value.code == -32021
                assert missing.value.error.data == {"requiredCapabilities": {capability: {}}}
            # The client is still usable afterwards.
            assert only_text(await client.call_tool("add", {"a": 1})) == "3"
    assert_input_rounds(app, mode, 0)
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
@pytest.mark.parametrize("action", ["accept", "decline", "cancel"])
async def test_elicitation_round_trip(
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    mode: Mode,
    reply_mode: ReplyMode,
    action: Literal["accept", "decline", "cancel"],
) -> None:
    app, url = await serve(start_server, reply_mode)
    seen: list[types.ElicitRequestParams] = []

    async def elicitation(
        ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        seen.append(params)
        if action == "accept":
            return types.ElicitResult(action="accept", content={"name": "Ada"})
        return types.ElicitResult(action=action)

    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, elicitation_callback=elicitation) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("ask_user", {"question": "Your name?"})
    assert not result.is_error, result
    expected_content = {"name": "Ada"} if action == "accept" else None
    assert result.structured_content == {"action": action, "content": expected_content}
    assert_input_rounds(app, mode, 1)
    (params,) = seen
    assert isinstance(params, types.ElicitRequestFormParams)
    assert params.message == "Your name?"
    assert params.requested_schema["required"] == ["name"]
    assert params.requested_schema["properties"] == {"name": {"type": "string"}}
    assert not tracebacks.records, tracebacks.describe()


# -- 7. roots ------------------------------------------------------------------------


@MODES
@REPLY_MODES
async def test_list_roots_round_trip(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    app, url = await serve(start_server, reply_mode)
    calls = 0

    async def list_roots(ctx: ClientRequestContext) -> types.ListRootsResult:
        nonlocal calls
        calls += 1
        return types.ListRootsResult(
            roots=[
                types.Root(uri=FileUrl("file:///work/project"), name="project"),
                types.Root(uri=FileUrl("file:///tmp/scratch"), name="scratch"),
            ]
        )

    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, list_roots_callback=list_roots) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("roots", {})
    assert not result.is_error, result
    assert only_text(result) == "project=file:///work/project\nscratch=file:///tmp/scratch"
    assert calls == 1
    assert_input_rounds(app, mode, 1)
    assert not tracebacks.records, tracebacks.describe()


# -- 7b. several questions: rounds, batches, prompts and resources ------------------


@dataclass
class Answers:
    """Client callbacks that answer every kind of question, and list the questions."""

    asked: list[str] = field(default_factory=list)

    async def elicitation(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.asked.append(f"elicit:{params.message}")
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def sampling(
        self, ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        assert isinstance(content, types.TextContent)
        self.asked.append(f"sample:{content.text}")
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="forty-two"),
            model="test-model",
        )

    async def list_roots(self, ctx: ClientRequestContext) -> types.ListRootsResult:
        self.asked.append("roots")
        return types.ListRootsResult(
            roots=[types.Root(uri=FileUrl("file:///work/project"), name="project")]
        )

    def callbacks(self) -> dict[str, Any]:
        return {
            "elicitation_callback": self.elicitation,
            "sampling_callback": self.sampling,
            "list_roots_callback": self.list_roots,
        }


@MODES
@REPLY_MODES
async def test_questions_in_a_row_with_progress(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    """Two questions one after the other: at 2026-07-28, two input-required rounds."""
    app, url = await serve(start_server, reply_mode)
    answers = Answers()
    values: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        values.append(progress)

    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, **answers.callbacks()) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("interview", {}, progress_callback=on_progress)
            assert only_text(result) == "Ada: forty-two"
            await trio.sleep(0.05)  # let the progress tasks land
    # Each question was asked once: answers come back with the retry, not asked again.
    assert answers.asked == ["elicit:Your name?", "sample:a poem for Ada"]
    assert_input_rounds(app, mode, 2)
    if mode == "legacy":
        assert values == [1.0, 2.0, 3.0]
    else:
        # Each round runs the handler again from the start, under a new
        # request id (a new progress token): each round's progress increases.
        # In either reply mode: progress opens the round's SSE response.
        assert values == [1.0, 1.0, 2.0, 1.0, 2.0, 3.0]
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
async def test_questions_at_once(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    """``ctx.request_input`` with three keys: one round, three callbacks."""
    app, url = await serve(start_server, reply_mode)
    answers = Answers()
    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, **answers.callbacks()) as client:
            await connected(app, reply_mode, inbox, client)
            result = await client.call_tool("survey", {})
    assert not result.is_error, result
    assert only_text(result) == "Ada|forty-two|file:///work/project"
    assert sorted(answers.asked) == ["elicit:Your name?", "roots", "sample:say hi"]
    assert_input_rounds(app, mode, 1)
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
async def test_prompts_and_resources_ask_too(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    """``prompts/get`` and ``resources/read`` handlers ask the client like tools do."""
    app, url = await serve(start_server, reply_mode)
    answers = Answers()
    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, **answers.callbacks()) as client:
            await connected(app, reply_mode, inbox, client)
            prompt = await client.get_prompt("personal")
            resource = await client.read_resource("mem://roots")
    (message,) = prompt.messages
    assert isinstance(message.content, types.TextContent)
    assert message.content.text == "Write to Ada."
    (content,) = resource.contents
    assert isinstance(content, types.TextResourceContents)
    assert content.text == "file:///work/project"
    assert answers.asked == ["elicit:Who is asking?", "roots"]
    assert_input_rounds(app, mode, 2)
    assert not tracebacks.records, tracebacks.describe()


# -- 7c. the same scenario on each anyio backend --------------------------------------


@dataclass
class Scenario:
    """What :func:`run_scenario` saw; plain data, so it can leave the client's thread."""

    library: str = ""
    version: str = ""
    results: list[str] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)


async def run_scenario(url: str, mode: Mode) -> Scenario:
    """Tools, progress, logging, elicitation, sampling, roots, resources and prompts.

    Written against anyio only (the SDK is anyio-based), so it runs under
    ``anyio.run`` on either backend.
    """
    seen = Scenario(library=sniffio.current_async_library())
    answers = Answers(seen.asked)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.progress.append(progress)

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.logs.append(f"{params.level}:{params.data}")

    per_request: dict[str, Any] = {"log_level": "info"} if mode == "auto" else {}
    with anyio.fail_after(TIMEOUT):
        async with sdk_client(
            url, mode, logging_callback=on_log, **per_request, **answers.callbacks()
        ) as client:
            seen.version = client.protocol_version
            if mode == "legacy":
                await set_level(client, "info")
            seen.results.append(only_text(await client.call_tool("add", {"a": 40})))
            counted = await client.call_tool(
                "count_up", {"steps": 3}, progress_callback=on_progress
            )
            seen.results.append(only_text(counted))
            seen.results.append(only_text(await client.call_tool("chatty", {})))
            seen.results.append(only_text(await client.call_tool("interview", {})))
            seen.results.append(only_text(await client.call_tool("survey", {})))
            greeting = (await client.read_resource("mem://greeting")).contents[0]
            assert isinstance(greeting, types.TextResourceContents)
            seen.results.append(greeting.text)
            prompt = (await client.get_prompt("personal")).messages[0].content
            assert isinstance(prompt, types.TextContent)
            seen.results.append(prompt.text)
            await anyio.sleep(0.05)  # let the notification tasks land
    return seen


@MODES
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
async def test_end_to_end_on_each_backend(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, backend: str
) -> None:
    """The SDK client on its own event loop (a worker thread), against our trio server."""
    app, url = await serve(start_server)
    # The scenario's own fail_after bounds the thread; it cannot be abandoned.
    seen = await trio.to_thread.run_sync(
        functools.partial(anyio.run, run_scenario, url, mode, backend=backend)
    )
    assert seen.library == backend
    assert seen.version == VERSION_OF[mode]
    assert seen.results == [
        "42",
        "counted to 3",
        "logged",
        "Ada: forty-two",
        "Ada|forty-two|file:///work/project",
        "hello, world",
        "Write to Ada.",
    ]
    assert seen.progress == [1.0, 2.0, 3.0]
    assert seen.logs == ["info:info line", "warning:{'code': 7}"]
    assert sorted(seen.asked) == [
        "elicit:Who is asking?",
        "elicit:Your name?",
        "elicit:Your name?",
        "roots",
        "sample:a poem for Ada",
        "sample:say hi",
    ]
    # interview: 2 rounds, survey: 1, personal: 1.
    assert_input_rounds(app, mode, 4)
    await wait_all_closed(app, 1, mode)
    assert not tracebacks.records, tracebacks.describe()


# -- 8. close ------------------------------------------------------------------------


@dataclass
class HttpLog:
    """What the SDK's HTTP client sent and got, seen through httpx2 event hooks."""

    exchanges: list[tuple[str, int, str | None]] = field(default_factory=list)
    issued_session_ids: set[str] = field(default_factory=set)
    #: Each POST's ``Mcp-Method`` and ``Mcp-Param-*`` headers, and the status it got.
    posts: list[tuple[str | None, dict[str, str], int]] = field(default_factory=list)

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        if request.method == "POST":
            params = {
                name.removeprefix("mcp-param-"): value
                for name, value in request.headers.items()
                if name.startswith("mcp-param-")
            }
            self.posts.append((request.headers.get("mcp-method"), params, response.status_code))
        issued = response.headers.get("mcp-session-id")
        if issued:
            self.issued_session_ids.add(issued)
        self.exchanges.append(
            (
                response.request.method,
                response.status_code,
                response.request.headers.get("mcp-session-id"),
            )
        )


@asynccontextmanager
async def recording_transport(url: str, log: HttpLog) -> AsyncIterator[TransportStreams]:
    timeout = httpx2.Timeout(TIMEOUT, read=60.0)
    hooks = {"response": [log.on_response]}
    async with (
        httpx2.AsyncClient(timeout=timeout, event_hooks=hooks) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


@REPLY_MODES
async def test_client_exit_deletes_the_session(
    start_server: StartServer,
    http: httpx.AsyncClient,
    tracebacks: TracebackRecorder,
    reply_mode: ReplyMode,
) -> None:
    """Legacy only: a 2026-07-28 client has no session to delete (see the next test)."""
    app, url = await serve(start_server, reply_mode)
    log = HttpLog()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(recording_transport(url, log), "legacy") as client:
            server_side_id = only_text(await client.call_tool("whoami", {}))
            assert manager_of(app).statistics().live_sessions == 1
    # Exactly one session was issued, and it is the one the tools ran in.
    assert log.issued_session_ids == {server_side_id}
    # The SDK terminated it with DELETE, and the server agreed.
    deletes = [(status, sid) for method, status, sid in log.exchanges if method == "DELETE"]
    assert deletes == [(200, server_side_id)]
    await wait_all_closed(app, 1, "legacy")

    headers = {
        **INIT_HEADERS,
        "mcp-session-id": server_side_id,
        "mcp-protocol-version": HANDSHAKE,
    }
    stale = await http.post(
        url, json={"jsonrpc": "2.0", "id": 9, "method": "ping"}, headers=headers
    )
    assert stale.status_code == 404
    assert stale.json()["error"]["code"] == -32001
    assert not tracebacks.records, tracebacks.describe()


@REPLY_MODES
async def test_modern_client_never_gets_a_session(
    start_server: StartServer, tracebacks: TracebackRecorder, reply_mode: ReplyMode
) -> None:
    """At 2026-07-28 every exchange is a POST that carries no session id and gets none."""
    app, url = await serve(start_server, reply_mode)
    log = HttpLog()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(recording_transport(url, log), "auto") as client:
            assert is_modern(client)
            assert only_text(await client.call_tool("whoami", {})) == "none"
            assert only_text(await client.call_tool("add", {"a": 1})) == "3"
    assert log.issued_session_ids == set()
    assert log.exchanges
    assert {(method, status, sid) for method, status, sid in log.exchanges} == {("POST", 200, None)}
    await wait_all_closed(app, 0, "auto")
    assert not tracebacks.records, tracebacks.describe()


@MODES
async def test_param_headers_and_the_header_mismatch_recovery(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    """``x-mcp-header`` parameters travel in ``Mcp-Param-*`` at 2026-07-28.

    A call to a tool the client has not listed lacks the headers: we answer
    400 + -32020, and the SDK lists the tools and sends the call again.
    Values that are not plain ASCII travel base64-encoded; we decode them.
    """
    _, url = await serve(start_server)
    log = HttpLog()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(recording_transport(url, log), mode) as client:
            first = await client.call_tool("routed", {"region": "eu-west"})
            encoded = await client.call_tool("routed", {"region": " Zoë\n", "replicas": 3})
    assert only_text(first) == "eu-west x1"
    assert only_text(encoded) == " Zoë\n x3"
    calls = [(method, params, status) for method, params, status in log.posts if method]
    if mode == "legacy":
        # A session's requests carry no routing headers.
        assert calls == []
    else:
        assert calls == [
            ("server/discover", {}, 200),
            ("tools/call", {}, 400),  # not listed yet: no Mcp-Param-Region
            ("tools/list", {}, 200),
            ("tools/call", {"region": "eu-west"}, 200),
            ("tools/call", {"region": "=?base64?IFpvw6sK?=", "replicas": "3"}, 200),
        ]
    assert not tracebacks.records, tracebacks.describe()


# -- 9. concurrency ------------------------------------------------------------------


@MODES
@REPLY_MODES
async def test_concurrent_clients(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    app, url = await serve(start_server, reply_mode)
    clients = 10
    session_ids: dict[int, set[str]] = {}
    sums: dict[tuple[int, int], int] = {}
    peak_live = 0
    peak_in_flight = 0

    async def one_client(index: int) -> None:
        nonlocal peak_live
        async with sdk_client(url, mode) as client:
            assert client.protocol_version == VERSION_OF[mode]
            ids: set[str] = set()

            async def call(j: int) -> None:
                result = await client.call_tool("slow_add", {"a": index, "b": j, "delay": 0.05})
                assert not result.is_error, result
                sums[index, j] = int(only_text(result))
                ids.add(only_text(await client.call_tool("whoami", {})))

            async with trio.open_nursery() as calls:
                for j in range(4):
                    calls.start_soon(call, j)
            peak_live = max(peak_live, manager_of(app).statistics().live_sessions)
            session_ids[index] = ids

    async def watch_in_flight() -> None:
        nonlocal peak_in_flight
        while True:
            peak_in_flight = max(peak_in_flight, sessionless(app).requests_in_flight)
            await trio.sleep(0.005)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_in_flight)
            async with trio.open_nursery() as clients_nursery:
                for index in range(clients):
                    clients_nursery.start_soon(one_client, index)
            nursery.cancel_scope.cancel()

    assert sums == {(i, j): i + j for i in range(clients) for j in range(4)}
    if mode == "legacy":
        # Each client stayed in one session of its own.
        assert all(len(ids) == 1 for ids in session_ids.values())
        assert len(set().union(*session_ids.values())) == clients
        assert peak_live > 1
    else:
        # No sessions; the requests ran side by side all the same.
        assert all(ids == {"none"} for ids in session_ids.values())
        assert peak_live == 0
        assert peak_in_flight > 1
        assert sessionless(app).answered >= clients * 8
    await wait_all_closed(app, clients, mode)
    assert not tracebacks.records, tracebacks.describe()
