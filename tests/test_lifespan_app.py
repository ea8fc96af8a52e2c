"""LifespanApp: the app built in the ASGI lifespan, with a nursery that outlives its serving.

Driven in process with the lifespan messages an ASGI server sends; the
requests go through the test kit to the built app. (Hypercorn with several
workers serving one is in test_multi_instance.)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from trio_mcp_sessions import LifespanApp, McpServer, StreamableHTTPApp
from trio_mcp_sessions.testing import McpTestClient

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    import pytest


def make_server() -> McpServer:
    server = McpServer("lifespan")

    @server.tool()
    def echo(text: str) -> str:
        """Echo."""
        return text

    return server


class Lifespan:
    """The server's side of the ASGI lifespan: startup, then shutdown when told."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.answered = trio.Event()
        self._shutdown = trio.Event()
        self._given = 0

    def shut_down(self) -> None:
        self._shutdown.set()

    async def receive(self) -> dict[str, Any]:
        self._given += 1
        if self._given == 1:
            return {"type": "lifespan.startup"}
        await self._shutdown.wait()
        return {"type": "lifespan.shutdown"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))
        self.answered.set()


async def test_the_app_is_built_in_the_lifespan_and_its_resources_close_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[str] = []

    async def resource(*, task_status: trio.TaskStatus[str]) -> None:
        try:
            task_status.started("a client")
            await trio.sleep_forever()
        finally:
            closed.append("closed")

    async def build(nursery: trio.Nursery) -> StreamableHTTPApp:
        assert await nursery.start(resource) == "a client"
        return StreamableHTTPApp(make_server())

    app = LifespanApp(build)
    assert app.app is None
    lifespan = Lifespan()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, {"type": "lifespan"}, lifespan.receive, lifespan.send)
        await lifespan.answered.wait()
        assert lifespan.sent == [{"type": "lifespan.startup.complete"}]
        assert app.app is not None
        client = McpTestClient(app.app)
        await client.initialize()
        result = await client.call_tool("echo", {"text": "hi"})
        assert result["content"][0]["text"] == "hi"
        assert closed == []  # the nursery lives while the app serves
        lifespan.shut_down()
    assert lifespan.sent[-1] == {"type": "lifespan.shutdown.complete"}
    assert closed == ["closed"]
    assert app.app.manager.statistics().live_sessions == 0  # the app's own shutdown ran


async def test_a_build_that_fails_fails_the_startup_clearly(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def build(nursery: trio.Nursery) -> StreamableHTTPApp:
        raise ConnectionRefusedError("redis://redis.internal:6379 refused the connection")

    lifespan = Lifespan()
    app = LifespanApp(build)
    await app({"type": "lifespan"}, lifespan.receive, lifespan.send)
    assert lifespan.sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "redis://redis.internal:6379 refused the connection",
        }
    ]
    assert app.app is None
    assert "building the app failed" in caplog.text


async def test_a_request_before_the_app_is_built_gets_503() -> None:
    async def build(nursery: trio.Nursery) -> StreamableHTTPApp:
        return StreamableHTTPApp(make_server())  # pragma: no cover - never started

    app = LifespanApp(build)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/mcp", "headers": []}, receive, send)
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    error = json.loads(body["body"])
    assert error["error"]["code"] == -32000
    assert "starting" in error["error"]["message"]
