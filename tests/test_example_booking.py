"""examples/booking_server.py: one tool that asks the user, in both eras, over real HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from _harness import load_example, messages
from conftest import initialize_body
from trio_mcp_sessions import McpServer

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
}


def booking_server() -> McpServer:
    server = load_example("booking_server").server
    assert isinstance(server, McpServer)
    return server


async def post_modern(
    http: httpx.AsyncClient, url: str, request_id: int, params: dict[str, Any]
) -> dict[str, Any]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "book",
    }
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    r = await http.post(url, content=json.dumps(body), headers=headers)
    assert r.status_code == 200, r.text
    assert "mcp-session-id" not in r.headers
    [reply] = messages(r)
    result: dict[str, Any] = reply["result"]
    return result


async def test_the_booking_tool_asks_through_an_input_required_round(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        url = await start_server(booking_server())
        call = {"_meta": META, "name": "book", "arguments": {"city": "Lisbon"}}
        first = await post_modern(http, url, 1, call)
        assert first["resultType"] == "input_required"
        assert first["inputRequests"]["dates"]["method"] == "elicitation/create"
        answer = {"dates": {"action": "accept", "content": {"dates": "May 3-5"}}}
        retry = {**call, "inputResponses": answer, "requestState": first["requestState"]}
        done = await post_modern(http, url, 2, retry)
        assert done["resultType"] == "complete"
        assert done["content"][0]["text"] == "Booked Lisbon for May 3-5."
        # The state is single use: the same retry again is refused.
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": "book",
        }
        body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": retry}
        again = await http.post(url, content=json.dumps(body), headers=headers)
        assert again.status_code == 400
        assert again.json()["error"]["code"] == -32602


async def test_a_session_client_gets_the_same_tool_through_elicitation(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        url = await start_server(booking_server())
        init = initialize_body()
        init["params"]["capabilities"] = {"elicitation": {}}
        r = await http.post(
            url,
            content=json.dumps(init),
            headers={
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
            },
        )
        session_id = r.headers["mcp-session-id"]
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-session-id": session_id,
            "mcp-protocol-version": "2025-11-25",
        }
        await http.post(
            url,
            content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            headers=headers,
        )
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "book", "arguments": {"city": "Porto"}},
        }
        async with trio.open_nursery() as nursery:

            async def answer_the_question() -> None:
                async with http.stream("POST", url, content=json.dumps(call), headers=headers) as s:
                    async for line in s.aiter_lines():
                        if not line.startswith("data: ") or line == "data: ":
                            continue  # not data, or the priming event
                        message = json.loads(line[6:])
                        if message.get("method") == "elicitation/create":
                            reply = {
                                "jsonrpc": "2.0",
                                "id": message["id"],
                                "result": {"action": "accept", "content": {"dates": "June"}},
                            }
                            await http.post(url, content=json.dumps(reply), headers=headers)
                        elif message.get("id") == 2:
                            assert message["result"]["content"][0]["text"] == (
                                "Booked Porto for June."
                            )
                            nursery.cancel_scope.cancel()

            nursery.start_soon(answer_the_question)
