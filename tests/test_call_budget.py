"""The budget of 2026-07-28 requests: keyed windows, 429 + Retry-After, discover always free."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_mcp_sessions import CallLimits, McpServer, RateLimit, ServerOptions, StreamableHTTPApp
from trio_mcp_sessions._cli import _parser, options_from
from trio_mcp_sessions.testing import open_test_client

pytestmark = pytest.mark.usefixtures("no_tracebacks")

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def make_server() -> McpServer:
    server = McpServer("budget")

    @server.tool()
    def echo(text: str) -> str:
        """Echo."""
        return text

    return server


async def test_calls_over_the_budget_get_429_and_discover_stays_free(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = CallLimits(rate_limit_per_client=RateLimit(3, 60))
    app = StreamableHTTPApp(make_server(), options=ServerOptions(call_limits=limits))
    async with open_test_client(app, protocol_version=MODERN) as client:
        call = {"name": "echo", "arguments": {"text": "hi"}}
        for _ in range(3):
            assert (await client.request("tools/call", call, name="echo")).status == 200
        refused = await client.request("tools/call", call, name="echo")
        assert refused.status == 429
        retry_after = int(refused.headers["retry-after"])
        assert retry_after >= 1
        error = refused.json()
        assert error["id"] == 4
        assert "too many requests" in error["error"]["message"]
        # The probe is never charged to the call budget (it has its own): a
        # refused probe would send a dual-era client back to the handshake.
        for _ in range(10):
            discover = await client.request("server/discover")
            assert discover.status == 200, discover.body
        # Sessions are a different budget: a 2025 client is unaffected.
        assert app.sessionless is not None
        assert app.sessionless.statistics().answered == 3 + 10
        # Once the window has moved on, calls are served again.
        await trio.sleep(60)
        assert (await client.request("tools/call", call, name="echo")).status == 200


async def test_without_a_budget_nothing_is_counted(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_client(make_server(), protocol_version=MODERN) as client:
        for _ in range(20):
            result = await client.call_tool("echo", {"text": "hi"})  # asserts a 200
            assert result["content"][0]["text"] == "hi"


def test_the_command_line_sets_the_call_budget() -> None:
    args = _parser().parse_args(
        [
            "serve",
            "examples/notes_server.py:server",
            "--call-rate-limit",
            "100/60",
            "--call-rate-limit-per-client",
            "10/1",
        ]
    )
    options = options_from(args)
    assert options.call_limits.rate_limit == RateLimit(100, 60)
    assert options.call_limits.rate_limit_per_client == RateLimit(10, 1)


def test_call_limits_refuse_what_is_not_a_rate_limit() -> None:
    with pytest.raises(TypeError, match="RateLimit"):
        CallLimits(rate_limit=5)  # type: ignore[arg-type]
