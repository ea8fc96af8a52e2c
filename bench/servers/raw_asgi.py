"""The ceiling: a minimal raw ASGI app on Hypercorn's trio worker, no MCP session layer.

POST parses the JSON body and answers a JSON-RPC result shaped like an MCP
``tools/call`` result (or an ``initialize`` result with an ``Mcp-Session-Id``,
or 202 for a notification); DELETE answers 200. ``RAW_REPLY_MODE=sse`` answers
requests with a one-event SSE stream instead of a JSON body. It implements the
ASGI lifespan (the trio worker needs it).

    python bench/servers/raw_asgi.py --bind 127.0.0.1:0
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hypercorn import run

SSE = os.environ.get("RAW_REPLY_MODE", "json") == "sse"
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_SESSION = (b"mcp-session-id", b"raw-session-0123456789abcdef")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method = scope["method"]
    if method == "DELETE":
        await _reply(send, 200, b"", [])
        return
    if method != "POST":
        await _reply(send, 405, b"", [(b"allow", b"POST, DELETE")])
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    request = json.loads(b"".join(chunks))
    if "id" not in request:
        await _reply(send, 202, b"", [])
        return
    if request.get("method") == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "raw", "version": "1"},
        }
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        await _reply(send, 200, body, [*_JSON, _SESSION])
        return
    text = request.get("params", {}).get("arguments", {}).get("text", "")
    result = {"content": [{"type": "text", "text": text}], "isError": False}
    body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
    if SSE:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        event = b"event: message\ndata: " + body + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _reply(send, 200, body, _JSON)


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


if __name__ == "__main__":
    run(app, __doc__.split("\n\n")[0])
