"""MCP 2026-07-28 in a few lines: a tool that asks the user, served beside the sessions.

Run it::

    python -m trio_mcp_sessions serve trio_mcp_sessions.examples.booking:server  # 127.0.0.1:8000

then ``python -m trio_mcp_sessions.examples.booking call http://127.0.0.1:8000/mcp`` (it
needs httpx) plays a 2026-07-28 client: ``server/discover``, then a ``tools/call`` that comes
back ``input_required``, then the same call again with the user's answer and the
``requestState`` it was given. A 2025 client
(with ``initialize`` and a session) gets the same tool, asked through ``elicitation/create``.
In a checkout, ``examples/booking_server.py`` is this server.
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


def client(url: str) -> None:  # pragma: no cover - a demo, run by hand
    """Play a 2026-07-28 client against the server at ``url``, printing each reply."""
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


def main(argv: list[str]) -> None:  # pragma: no cover
    """``call URL`` plays the client; anything else prints how to run the example."""
    if len(argv) == 2 and argv[0] == "call":
        client(argv[1])
    else:
        print(__doc__)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
