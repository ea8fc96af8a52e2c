"""Interop: our server against the official ``mcp`` Python SDK client (2.3.0).

Every test runs a real Hypercorn (trio worker) and drives it with
``mcp.client.Client`` over Streamable HTTP, in ``legacy`` mode (initialize
handshake) and in ``auto`` mode (``server/discover`` probe, then fallback to
the handshake), against both reply modes where the reply mode matters.

In ``json`` reply mode every server-to-client message travels on the GET
stream, which the SDK opens in the background after ``initialized``; tests
that need those messages first wait until the GET stream demonstrably
delivers (see :func:`connected`).
"""

from __future__ import annotations

import base64
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx2
import mcp_types as types
import pytest
import trio
from mcp.client import Client, ClientRequestContext, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.exceptions import MCPError as SdkError
from pydantic import FileUrl

from _harness import manager_of, wait_until
from conftest import INIT_HEADERS, StartServer, TracebackRecorder
from trio_mcp_sessions import (
    CapabilityNotSupported,
    Context,
    McpError,
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
        except McpError as exc:
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
    def whoami(ctx: Context) -> str:
        """The MCP session id this call arrived on."""
        return ctx.session_id or "none"

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


async def connected(app: StreamableHTTPApp, reply_mode: ReplyMode, inbox: Inbox) -> None:
    """In json reply mode, wait until the client's GET stream delivers.

    Server-to-client messages emitted before the SDK's background GET is
    attached are not delivered; broadcasting until one arrives removes that
    race from the tests (in sse mode they travel on the POST's response).
    """
    if reply_mode != "json":
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


async def wait_all_closed(app: StreamableHTTPApp, expected_created: int) -> None:
    manager = manager_of(app)
    await wait_until(lambda: manager.statistics().live_sessions == 0)
    stats = manager.statistics()
    assert stats.created == expected_created
    assert stats.closed == expected_created
    # Closed by the client's DELETE, not by a timeout or an error.
    assert stats.closed_by_reason == {"deleted": expected_created}


# -- 1. initialize -------------------------------------------------------------------


@MODES
async def test_initialize_negotiates_latest_handshake_version(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    app, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            assert client.protocol_version == "2025-11-25"
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
                await client.send_ping()
            assert manager_of(app).statistics().live_sessions == 1
    await wait_all_closed(app, 1)
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
            await connected(app, reply_mode, inbox)
            result = await client.call_tool("count_up", {"steps": 4}, progress_callback=on_progress)
            assert only_text(result) == "counted to 4"
            # The SDK hands each notification to its own task: allow them to land.
            await wait_until(lambda: len(received) >= 4)
    assert received == [(float(i), 4.0, f"step {i}") for i in range(1, 5)]
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
async def test_logging_callback_honours_set_level(
    start_server: StartServer,
    tracebacks: TracebackRecorder,
    mode: Mode,
    reply_mode: ReplyMode,
    level: types.LoggingLevel,
    expected: list[str],
) -> None:
    app, url = await serve(start_server, reply_mode)
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox, logging_callback=on_log) as client:
            await connected(app, reply_mode, inbox)
            await set_level(client, level)
            result = await client.call_tool("chatty", {})
            assert only_text(result) == "logged"
            await wait_until(lambda: len(logs) >= len(expected))
            await trio.sleep(0.05)  # nothing more may arrive
    assert [entry.level for entry in logs] == expected
    by_level = {entry.level: entry for entry in logs}
    assert by_level["warning"].data == {"code": 7}
    if "info" in by_level:
        assert by_level["info"].data == "info line"
        assert by_level["info"].logger == "interop"
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
async def test_client_cancellation_reaches_the_handler(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
    probe = Probe()
    app, url = await serve(start_server, reply_mode, probe)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            # Caller-side cancellation: the SDK sends notifications/cancelled.
            with trio.move_on_after(TIMEOUT / 2) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.call_tool, "wait_forever", {})
                    await probe.started.wait()
                    nursery.cancel_scope.cancel()
            assert not scope.cancelled_caught
            await probe.cancelled.wait()
            # The session survives the cancellation.
            assert only_text(await client.call_tool("add", {"a": 5})) == "7"

            # A read timeout also cancels on the server (the SDK's courtesy cancel).
            probe.started, probe.cancelled = trio.Event(), trio.Event()
            with pytest.raises(SdkError) as timed_out:
                await client.call_tool("wait_forever", {}, read_timeout_seconds=0.2)
            assert timed_out.value.code == -32001  # the SDK's REQUEST_TIMEOUT
            await probe.cancelled.wait()
            assert only_text(await client.call_tool("add", {"a": 6})) == "8"
    await wait_all_closed(app, 1)
    assert not tracebacks.records, tracebacks.describe()


@MODES
async def test_closed_sse_stream_is_resumed_by_the_client(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    """SEP-1699 polling: the server ends the response; the SDK resumes with Last-Event-ID."""
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
    app, url = await serve(start_server, reply_mode)
    inbox = Inbox()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, inbox) as client:
            await connected(app, reply_mode, inbox)
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
            assert set(resources) == {"mem://greeting", "mem://logo.png"}
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
            assert missing.value.code == -32002
    assert not tracebacks.records, tracebacks.describe()


@MODES
@REPLY_MODES
async def test_resource_subscription_notifies_the_client(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode, reply_mode: ReplyMode
) -> None:
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
        async with sdk_client(url, mode, inbox) as client:
            await connected(app, "json", inbox)  # updates travel on the GET stream
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


# -- 5. prompts and completion -------------------------------------------------------


@MODES
async def test_prompts_and_completion(
    start_server: StartServer, tracebacks: TracebackRecorder, mode: Mode
) -> None:
    _, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:
            listed = await client.list_prompts()
            (prompt,) = listed.prompts
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
            await connected(app, reply_mode, inbox)
            result = await client.call_tool("ask_model", {"prompt": "meaning of life?"})
    assert not result.is_error, result
    assert only_text(result) == "test-model says forty-two"
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
    _, url = await serve(start_server)

    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.ErrorData:
        return types.ErrorData(code=-1, message="user declined")

    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode, sampling_callback=sampling) as client:
            result = await client.call_tool("ask_model", {"prompt": "hi"})
    assert result.is_error is True
    assert only_text(result) == "sampling refused (-1): user declined"
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
    _, url = await serve(start_server)
    with trio.fail_after(TIMEOUT):
        async with sdk_client(url, mode) as client:  # no callbacks: no capabilities
            result = await client.call_tool(tool, arguments)
            # The session is still usable afterwards.
            assert only_text(await client.call_tool("add", {"a": 1})) == "3"
    assert result.is_error is True
    assert only_text(result) == (
        f"{capability} unavailable: the client did not declare the {capability!r} capability"
    )
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
            await connected(app, reply_mode, inbox)
            result = await client.call_tool("ask_user", {"question": "Your name?"})
    assert not result.is_error, result
    expected_content = {"name": "Ada"} if action == "accept" else None
    assert result.structured_content == {"action": action, "content": expected_content}
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
            await connected(app, reply_mode, inbox)
            result = await client.call_tool("roots", {})
    assert not result.is_error, result
    assert only_text(result) == "project=file:///work/project\nscratch=file:///tmp/scratch"
    assert calls == 1
    assert not tracebacks.records, tracebacks.describe()


# -- 8. close ------------------------------------------------------------------------


@dataclass
class HttpLog:
    """What the SDK's HTTP client sent and got, seen through httpx2 event hooks."""

    exchanges: list[tuple[str, int, str | None]] = field(default_factory=list)
    issued_session_ids: set[str] = field(default_factory=set)

    async def on_response(self, response: httpx2.Response) -> None:
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


@MODES
@REPLY_MODES
async def test_client_exit_deletes_the_session(
    start_server: StartServer,
    http: httpx.AsyncClient,
    tracebacks: TracebackRecorder,
    mode: Mode,
    reply_mode: ReplyMode,
) -> None:
    app, url = await serve(start_server, reply_mode)
    log = HttpLog()
    with trio.fail_after(TIMEOUT):
        async with sdk_client(recording_transport(url, log), mode) as client:
            server_side_id = only_text(await client.call_tool("whoami", {}))
            assert manager_of(app).statistics().live_sessions == 1
    # Exactly one session was issued, and it is the one the tools ran in.
    assert log.issued_session_ids == {server_side_id}
    # The SDK terminated it with DELETE, and the server agreed.
    deletes = [(status, sid) for method, status, sid in log.exchanges if method == "DELETE"]
    assert deletes == [(200, server_side_id)]
    await wait_all_closed(app, 1)

    headers = {
        **INIT_HEADERS,
        "mcp-session-id": server_side_id,
        "mcp-protocol-version": "2025-11-25",
    }
    stale = await http.post(
        url, json={"jsonrpc": "2.0", "id": 9, "method": "ping"}, headers=headers
    )
    assert stale.status_code == 404
    assert stale.json()["error"]["code"] == -32001
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

    async def one_client(index: int) -> None:
        nonlocal peak_live
        async with sdk_client(url, mode) as client:
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

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for index in range(clients):
                nursery.start_soon(one_client, index)

    assert sums == {(i, j): i + j for i in range(clients) for j in range(4)}
    # Each client stayed in one session of its own.
    assert all(len(ids) == 1 for ids in session_ids.values())
    assert len(set().union(*session_ids.values())) == clients
    assert peak_live > 1
    await wait_all_closed(app, clients)
    assert not tracebacks.records, tracebacks.describe()
