"""MCP 2026-07-28 in a few lines: a tool that asks the user, served beside the sessions.

Run it::

    python -m trio_mcp_sessions serve examples/booking_server.py:server --bind 127.0.0.1:8000

then ``python examples/booking_server.py call http://127.0.0.1:8000/mcp`` plays a 2026-07-28
client: ``server/discover``, then a ``tools/call`` that comes back ``input_required``, then the
same call again with the user's answer and the ``requestState`` it was given. A 2025 client
(with ``initialize`` and a session) gets the same tool, asked through ``elicitation/create``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from trio_mcp_sessions import CacheHint, Context, McpServer

server = McpServer(
    "booking",
    "1.0.0",
    instructions="Books hotel rooms; asks for the dates.",
    cache_hints={"tools/list": CacheHint(ttl_ms=300_000, scope="public")},
)


@server.tool()
async def book(ctx: Context, city: str) -> str:
    """Book a room in a city, asking the user for the dates.

    Args:
        city: Where to stay.
    """
    await ctx.info(f"looking for rooms in {city}")  # only sent if the request asks for logs
    answer = await ctx.elicit(
        f"Which dates in {city}?",
        {"type": "object", "properties": {"dates": {"type": "string"}}, "required": ["dates"]},
        key="dates",
    )
    if answer.get("action") != "accept":
        return "Nothing booked."
    return f"Booked {city} for {answer['content']['dates']}."


def _client(url: str) -> None:  # pragma: no cover - a demo, run by hand
    import httpx

    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "demo", "version": "1"},
    }

    def post(request_id: int, method: str, params: dict[str, Any], name: str = "") -> Any:
        headers = {
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": method,
        }
        if name:
            headers["mcp-name"] = name
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        reply = httpx.post(url, json=body, headers=headers, timeout=10).json()
        print(json.dumps(reply, indent=2))
        return reply

    post(1, "server/discover", {"_meta": meta})
    call = {"_meta": meta, "name": "book", "arguments": {"city": "Lisbon"}}
    first = post(2, "tools/call", call, "book")["result"]
    answer = {"dates": {"action": "accept", "content": {"dates": "May 3-5"}}}
    retry = {**call, "inputResponses": answer, "requestState": first["requestState"]}
    post(3, "tools/call", retry, "book")


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 3 and sys.argv[1] == "call":
        _client(sys.argv[2])
    else:
        print(__doc__)
