"""The budget of 2026-07-28 requests: keyed windows, 429 + Retry-After, discover always free."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_mcp_sessions import CallLimits, McpServer, RateLimit, ServerOptions, StreamableHTTPApp
from trio_mcp_sessions._cli import _parser, options_from

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")

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


async def post(http: httpx.AsyncClient, url: str, method: str, params: dict[str, Any]) -> Any:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
    }
    if method == "tools/call":
        headers["mcp-name"] = params["name"]
    body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": {**params, "_meta": META}}
    return await http.post(url, content=json.dumps(body), headers=headers)


async def test_calls_over_the_budget_get_429_and_discover_stays_free(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    limits = CallLimits(rate_limit_per_client=RateLimit(3, 60))
    app = StreamableHTTPApp(make_server(), options=ServerOptions(call_limits=limits))
    with trio.fail_after(10):
        url = await start_server(app)
        call = {"name": "echo", "arguments": {"text": "hi"}}
        for _ in range(3):
            assert (await post(http, url, "tools/call", call)).status_code == 200
        refused = await post(http, url, "tools/call", call)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()
        assert error["id"] == 9
        assert "too many requests" in error["error"]["message"]
        # The probe is never charged to the call budget (it has its own): a
        # refused probe would send a dual-era client back to the handshake.
        for _ in range(10):
            discover = await post(http, url, "server/discover", {})
            assert discover.status_code == 200, discover.text
        # Sessions are a different budget: a 2025 client is unaffected.
        assert app.sessionless is not None
        assert app.sessionless.statistics().answered == 3 + 10


async def test_without_a_budget_nothing_is_counted(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        url = await start_server(StreamableHTTPApp(make_server()))
        call = {"name": "echo", "arguments": {"text": "hi"}}
        for _ in range(20):
            assert (await post(http, url, "tools/call", call)).status_code == 200


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
