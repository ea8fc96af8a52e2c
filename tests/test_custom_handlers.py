"""McpServer.request_handler and notification_handler, through a real session.

Driven through the public manager API (no HTTP), on trio's mock clock.
"""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing

from trio_mcp_sessions import (
    BoundedSessionManager,
    Context,
    EventStream,
    McpError,
    McpServer,
    Notification,
    Request,
    RequestInfo,
    Response,
)
from trio_mcp_sessions._protocol._lifecycle import parse_initialize

INFO = RequestInfo(client_address="127.0.0.1")


async def open_session(manager: BoundedSessionManager) -> str:
    session_id = await manager.create_session(INFO)
    request = Request(
        1,
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
    )
    reply = await manager.initialize_session(session_id, request, parse_initialize(request), INFO)
    assert isinstance(reply, Response)
    await manager.accept_messages(session_id, [Notification("notifications/initialized")], INFO)
    return session_id


async def next_message(stream: EventStream) -> dict[str, Any]:
    """The next JSON-RPC message on *stream* (priming events carry no data)."""
    while True:
        event = await stream.receive()
        if event.data:
            message: dict[str, Any] = json.loads(event.data)
            return message


async def test_a_custom_request_method_gets_its_params_and_a_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("custom-handlers")
    seen: list[tuple[str | None, object]] = []

    @server.request_handler("example/echo")
    async def echo(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        seen.append((ctx.session_id, ctx.request_id))
        await ctx.info("echoing")  # related to the request: on its stream
        if "refuse" in params:
            raise McpError(-32000, "refused", {"why": params["refuse"]})
        return {"echo": params["text"]}

    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        with trio.fail_after(10):
            stream = await manager.create_stream(
                session_id, [Request(7, "example/echo", {"text": "hi"})], INFO, "sse"
            )
            log = await next_message(stream)
            answer = await next_message(stream)
            stream.detach()
            refused = await manager.create_stream(
                session_id, [Request(8, "example/echo", {"refuse": "no"})], INFO, "sse"
            )
            await next_message(refused)  # the log
            error = await next_message(refused)
            refused.detach()
    assert seen == [(session_id, 7), (session_id, 8)]
    assert log["method"] == "notifications/message"
    assert log["params"] == {"level": "info", "data": "echoing"}
    assert answer == {"jsonrpc": "2.0", "id": 7, "result": {"echo": "hi"}}
    assert error == {
        "jsonrpc": "2.0",
        "id": 8,
        "error": {"code": -32000, "message": "refused", "data": {"why": "no"}},
    }


async def test_a_notification_handler_gets_a_context_without_a_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = McpServer("custom-handlers")
    seen: list[tuple[str | None, object, dict[str, Any]]] = []

    @server.notification_handler("notifications/roots/list_changed")
    async def roots_changed(ctx: Context, params: dict[str, Any]) -> None:
        seen.append((ctx.session_id, ctx.request_id, params))
        await ctx.info("roots changed")  # no request: on the standalone stream

    async with BoundedSessionManager(server) as manager:
        session_id = await open_session(manager)
        with trio.fail_after(10):
            standalone = await manager.create_standalone_stream(session_id)
            assert standalone is not None
            await manager.accept_messages(
                session_id,
                [Notification("notifications/roots/list_changed", {"why": "test"})],
                INFO,
            )
            log = await next_message(standalone)
            standalone.detach()
    assert seen == [(session_id, None, {"why": "test"})]
    assert log == {
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {"level": "info", "data": "roots changed"},
    }
