"""The ceiling: a minimal raw ASGI app on Hypercorn's trio worker, no MCP session layer.

POST parses the JSON body and answers a JSON-RPC result shaped like an MCP
``tools/call`` result (or an ``initialize`` result with an ``Mcp-Session-Id``,
or 202 for a notification); DELETE answers 200. ``RAW_REPLY_MODE=sse`` answers
requests with a one-event SSE stream instead of a JSON body. It implements the
ASGI lifespan (the trio worker needs it).

A 2026-07-28 request (``_meta`` names the version; no session) gets what a
modern server answers: a result with ``resultType`` and the server's info in
``_meta``, as JSON; when the request asks for progress (a ``progressToken``)
the answer is an SSE stream with one progress notification, written on its
own, then the result. No checks at all: the ceiling for the stateless scenario.

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
_MODERN = "io.modelcontextprotocol/protocolVersion"
_SERVER_INFO = {"io.modelcontextprotocol/serverInfo": {"name": "raw", "version": "1"}}


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
    params = request.get("params", {})
    meta = params.get("_meta") or {}
    if _MODERN in meta:
        await _modern(send, request, params, meta)
        return
    text = params.get("arguments", {}).get("text", "")
    result = {"content": [{"type": "text", "text": text}], "isError": False}
    body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
    if SSE:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        event = b"event: message\ndata: " + body + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _reply(send, 200, body, _JSON)


async def _modern(send: Any, request: Any, params: Any, meta: Any) -> None:
    text = params.get("arguments", {}).get("text", "")
    result = {
        "resultType": "complete",
        "content": [{"type": "text", "text": text}],
        "_meta": _SERVER_INFO,
    }
    body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
    token = meta.get("progressToken")
    if token is None:
        await _reply(send, 200, body, _JSON)
        return
    progress = {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": token, "progress": 1, "total": 1},
    }
    await send({"type": "http.response.start", "status": 200, "headers": _SSE})
    event = b"event: message\ndata: " + json.dumps(progress).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": event, "more_body": True})
    event = b"event: message\ndata: " + body + b"\n\n"
    await send({"type": "http.response.body", "body": event, "more_body": False})


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


if __name__ == "__main__":
    run(app, __doc__.split("\n\n")[0])
