"""trio_mcp_sessions.testing: a user's in-process client, on trio's mock clock, both eras."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_mcp_sessions import Context, McpServer, ServerOptions, SessionLimits
from trio_mcp_sessions.testing import McpTestClient, TestResponse, open_test_client


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
