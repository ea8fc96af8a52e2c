"""End-to-end basics over a real Hypercorn: initialize, call, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conftest import INIT_HEADERS, StartServer, initialize_body
from trio_mcp_sessions import McpServer

if TYPE_CHECKING:
    import httpx


def make_server() -> McpServer:
    server = McpServer("smoke", "1.0")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


async def test_initialize_call_delete(start_server: StartServer, http: httpx.AsyncClient) -> None:
    url = await start_server(make_server(), reply_mode="json")
    r = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
    assert r.status_code == 200
    session_id = r.headers["mcp-session-id"]
    headers = {**INIT_HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
    r = await http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert r.status_code == 202
    assert r.content == b""
    r = await http.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 2, "b": 3}},
        },
        headers=headers,
    )
    assert r.status_code == 200
    assert r.json()["result"]["content"][0]["text"] == "5"
    r = await http.delete(url, headers=headers)
    assert r.status_code == 200
    r = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == -32001
