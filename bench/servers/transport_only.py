"""Our HTTP transport over a session manager that does nothing: the transport's own cost.

``StreamableHTTPApp`` with every check it makes on every request (Host, Origin,
Accept, Content-Type, size, JSON-RPC, version and session headers) and the same
replies as ours (JSON or SSE with a priming event), over a manager that keeps
a dict of ids, answers ``tools/call`` at once and runs no task. Measured
against the raw ASGI app and against ours by ``bench/layer_cost.py``.

    python bench/servers/transport_only.py --bind 127.0.0.1:0
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from trio_mcp_sessions import (
    EventStream,
    RequestInfo,
    RestoreOutcome,
    SessionInfo,
    StreamableHTTPApp,
)
from trio_mcp_sessions._protocol._jsonrpc import Message, Request, Response, encode
from trio_mcp_sessions._session import SseEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hypercorn import run

if TYPE_CHECKING:
    from collections.abc import Sequence


class NullManager:
    """The :class:`SessionManager` interface with nothing behind it (every call a checkpoint)."""

    def __init__(self) -> None:
        self.live: dict[str, str | None] = {}

    async def create_session(self, info: RequestInfo) -> str:
        await trio.lowlevel.checkpoint()
        session_id = secrets.token_urlsafe(24)
        self.live[session_id] = None
        return session_id

    async def initialize_session(
        self, session_id: str, request: Request, client: Any, info: RequestInfo
    ) -> Response:
        await trio.lowlevel.checkpoint()
        self.live[session_id] = client.protocol_version
        result = {
            "protocolVersion": client.protocol_version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "transport-only", "version": "1"},
        }
        return Response(request.id, result)

    def get_session(self, session_id: str) -> SessionInfo | None:
        if session_id not in self.live:
            return None
        return SessionInfo(session_id, self.live[session_id], True, None)

    async def has_session(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return session_id in self.live

    async def close_session(self, session_id: str, reason: Any) -> None:
        await trio.lowlevel.checkpoint()
        self.live.pop(session_id, None)

    async def create_stream(
        self, session_id: str, requests: Sequence[Request], info: RequestInfo, reply_mode: str
    ) -> EventStream:
        await trio.lowlevel.checkpoint()
        priming = SseEvent("r1_0", b"", 1000) if reply_mode == "sse" else None
        stream = EventStream("r1", priming=priming)
        for n, request in enumerate(requests, start=1):
            text = (request.params or {}).get("arguments", {}).get("text", "")
            result = {"content": [{"type": "text", "text": text}], "isError": False}
            stream.send_nowait(SseEvent(f"r1_{n}", encode(Response(request.id, result))))
        stream.end()
        return stream

    async def accept_messages(
        self, session_id: str, messages: Sequence[Message], info: RequestInfo
    ) -> None:
        await trio.lowlevel.checkpoint()

    async def create_standalone_stream(self, session_id: str) -> EventStream | None:
        await trio.lowlevel.checkpoint()
        return None

    async def resume(self, session_id: str, last_event_id: str) -> EventStream:
        raise NotImplementedError

    async def restore_session(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        await trio.lowlevel.checkpoint()
        return RestoreOutcome.NOT_FOUND

    def begin_drain(self) -> None:
        pass


reply_mode = "json" if os.environ.get("TRANSPORT_REPLY_MODE") == "json" else "sse"
app = StreamableHTTPApp(manager=NullManager(), reply_mode=reply_mode)

if __name__ == "__main__":
    run(app, __doc__.split("\n\n")[0])
