"""trio_mcp_sessions.testing: a user's in-process client, on trio's mock clock, both eras."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest
import trio
import trio.testing

from trio_mcp_sessions import (
    BoundedSessionManager,
    Context,
    McpServer,
    ServerOptions,
    SessionLimits,
)
from trio_mcp_sessions.testing import (
    McpTestClient,
    TestEvent,
    TestResponse,
    TestStream,
    open_test_client,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_mcp_sessions import StreamableHTTPApp


def make_server() -> McpServer:
    server = McpServer("kit", "1.0.0")

    @server.tool()
    async def forecast(city: str, ctx: Context, days: int = 3) -> str:
        """Forecast, with progress, after a long think."""
        for day in range(1, days + 1):
            await ctx.report_progress(day, days)
        await trio.sleep(30)  # autojump_clock: no real wait
        return f"Sunny in {city} for {days} days"

    @server.tool()
    async def hang() -> str:
        """Never answers by itself."""
        await trio.sleep_forever()
        return "never"

    return server


@pytest.mark.parametrize("version", ["2025-11-25", "2025-03-26", "2026-07-28"])
async def test_a_tool_in_each_era(version: str, autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    async with open_test_client(make_server(), protocol_version=version) as client:
        if not client.sessionless:
            info = await client.initialize()
            assert info["serverInfo"]["name"] == "kit"
            assert client.session_id is not None
        result = await client.call_tool("forecast", {"city": "Paris"}, _meta={"progressToken": 1})
        assert result["content"][0]["text"] == "Sunny in Paris for 3 days"
        response = await client.request("tools/list")
        assert response.status == 200
        [reply] = [m for m in response.messages if "result" in m]
        assert {tool["name"] for tool in reply["result"]["tools"]} == {"forecast", "hang"}
    assert trio.current_time() - start >= 30  # the tool's sleep, on the mock clock


async def test_the_deadline_and_the_session_clock_run_on_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    options = ServerOptions(request_timeout=5, limits=SessionLimits(idle_timeout=60))
    async with open_test_client(make_server(), options=options) as client:
        await client.initialize()
        result = await client.call_tool("hang")
        assert result["isError"] is True
        assert "timed out after 5 s" in result["content"][0]["text"]
        await trio.sleep(61)  # idle: the session is gone
        gone = await client.request("tools/list")
        assert gone.status == 404


async def test_raw_posts_and_answers(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_client(make_server()) as client:
        assert isinstance(client, McpTestClient)
        bad = await client.post(b"{not json")
        assert isinstance(bad, TestResponse)
        assert (bad.status, bad.json()["error"]["code"]) == (400, -32700)
        with pytest.raises(AssertionError, match=r"answered 400: .*send initialize first"):
            await client.call_tool("forecast", {"city": "Oslo"})  # no session yet


async def test_the_session_s_get_stream_delete_and_404(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_client(make_server()) as client:
        await client.initialize()
        manager = client.app.manager
        assert isinstance(manager, BoundedSessionManager)
        async with client.open_get_stream() as stream:
            assert isinstance(stream, TestStream)
            assert (stream.status, stream.headers["content-type"]) == (200, "text/event-stream")
            await manager.notify_all("notifications/tools/list_changed")
            message = await stream.next_message()
            assert message["method"] == "notifications/tools/list_changed"
            [priming, event] = stream.events
            assert isinstance(event, TestEvent)
            assert (priming.data, priming.retry) == ("", 1000)
            assert event.json() == message
        # Missed while away, then resumed from the last id seen.
        await manager.notify_all("notifications/prompts/list_changed")
        async with client.open_get_stream(last_event_id=event.id) as resumed:
            missed = await resumed.next_message()
            assert missed["method"] == "notifications/prompts/list_changed"
        assert (await client.delete()).status == 200
        assert (await client.delete()).status == 404
        assert (await client.request("ping")).status == 404


async def test_raw_requests_chunked_bodies_other_paths_and_batches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    async with open_test_client(make_server(), body_timeout=10, metrics_path="/metrics") as client:
        # Exactly the headers given, as bytes: no accept, so 406.
        raw = await client.send("POST", ping, headers=[(b"content-type", b"application/json")])
        assert (raw.status, raw.json()["error"]["code"]) == (406, -32000)
        # A body in chunks, then one that trickles past the body deadline (mock clock).
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        chunked = await client.send("POST", [ping[:10], ping[10:]], headers=headers)
        assert chunked.status == 400  # a ping before initialize
        assert "initialize" in chunked.json()["error"]["message"]

        async def trickle() -> AsyncIterator[bytes]:
            for byte in ping:
                await trio.sleep(1)
                yield bytes([byte])

        slow = await client.send("POST", trickle(), headers=headers)
        assert (slow.status, slow.headers["connection"]) == (408, "close")
        assert (await client.send("GET", path="/metrics")).body.startswith(b"# HELP")
        # A batch at 2025-03-26: a list posted is one.
        old = McpTestClient(client.app, protocol_version="2025-03-26")
        await old.initialize()
        batch = await old.post(
            [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in (1, 2)],
            headers=old.session_headers(),
        )
        assert sorted(m["id"] for m in batch.messages) == [1, 2]


class _Broken:
    """An ASGI app that starts its response twice (the kit must say so, not hide it)."""

    path = "/mcp"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 500, "headers": []})


async def test_an_app_that_breaks_the_asgi_protocol_fails_the_test() -> None:
    client = McpTestClient(cast("StreamableHTTPApp", _Broken()))
    with pytest.raises(AssertionError, match="started its response twice"):
        await client.send("GET")
