"""A session manager of one's own, written with the public API alone, served by the transport.

The transport talks to sessions only through :class:`SessionManager`; this
test is the proof: ``TinyManager`` imports nothing private (checked below),
answers ``initialize``, ``ping`` and ``tools/call`` itself, and a real
Hypercorn serves it through :class:`StreamableHTTPApp`.
"""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from _harness import messages
from conftest import INIT_HEADERS, initialize_body
from trio_mcp_sessions import (
    ClientInfo,
    CloseReason,
    ErrorResponse,
    EventStream,
    Message,
    Notification,
    ReplyMode,
    Request,
    RequestInfo,
    Response,
    RestoreOutcome,
    SessionInfo,
    SessionManager,
    SessionNotFound,
    SseEvent,
    StreamableHTTPApp,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx

    from conftest import StartServer


class TinyManager:
    """Sessions in a dict, requests answered on the spot: no nursery, no stores, no bounds."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionInfo] = {}
        self._ids = itertools.count(1)
        self.notifications: list[str] = []

    async def create_session(self, info: RequestInfo) -> str:
        await trio.lowlevel.checkpoint()
        session_id = f"tiny-{next(self._ids)}"
        self._sessions[session_id] = SessionInfo(session_id, None, False, info.principal)
        return session_id

    async def initialize_session(
        self, session_id: str, request: Request, client: ClientInfo, info: RequestInfo
    ) -> Response | ErrorResponse:
        await trio.lowlevel.checkpoint()
        self._sessions[session_id] = SessionInfo(
            session_id, client.protocol_version, True, info.principal
        )
        return Response(
            request.id,
            {
                "protocolVersion": client.protocol_version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "tiny", "version": "0"},
            },
        )

    def get_session(self, session_id: str) -> SessionInfo | None:
        return self._sessions.get(session_id)

    async def has_session(self, session_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return session_id in self._sessions

    async def close_session(self, session_id: str, reason: CloseReason) -> None:
        await trio.lowlevel.checkpoint()
        if self._sessions.pop(session_id, None) is None:
            raise SessionNotFound(session_id)

    def _answer(self, request: Request) -> Response | ErrorResponse:
        if request.method == "ping":
            return Response(request.id, {})
        if request.method == "tools/call":
            name = (request.params or {}).get("name")
            return Response(request.id, {"content": [{"type": "text", "text": f"tiny {name}"}]})
        return ErrorResponse(request.id, -32601, f"Method not found: {request.method}")

    async def create_stream(
        self,
        session_id: str,
        requests: Sequence[Request],
        info: RequestInfo,
        reply_mode: ReplyMode,
    ) -> EventStream:
        await trio.lowlevel.checkpoint()
        if session_id not in self._sessions:
            raise SessionNotFound(session_id)
        stream = EventStream(f"r{next(self._ids)}")
        for n, request in enumerate(requests, 1):
            data = json.dumps(self._answer(request).to_json()).encode()
            stream.put(SseEvent(f"{stream.stream_id}_{n}", data))
        stream.end()
        return stream

    async def accept_messages(
        self, session_id: str, messages: Sequence[Message], info: RequestInfo
    ) -> None:
        await trio.lowlevel.checkpoint()
        self.notifications += [m.method for m in messages if isinstance(m, Notification)]

    async def create_standalone_stream(self, session_id: str) -> EventStream | None:
        await trio.lowlevel.checkpoint()
        stream = EventStream(f"g{next(self._ids)}")
        stream.end()  # nothing to say, ever
        return stream

    async def resume(self, session_id: str, last_event_id: str) -> EventStream:
        await trio.lowlevel.checkpoint()
        stream = EventStream("resumed")
        stream.end()
        return stream

    async def restore_session(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        await trio.lowlevel.checkpoint()
        return RestoreOutcome.NOT_SUPPORTED

    def begin_drain(self) -> None:
        pass

    def finish_drain(self) -> None:
        pass


def test_the_tiny_manager_is_a_session_manager_of_public_names_only() -> None:
    assert isinstance(TinyManager(), SessionManager)
    tree = ast.parse(Path(__file__).read_text())
    private = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trio_mcp_sessions.")
    ]
    assert private == []


async def test_the_transport_serves_a_custom_manager(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    manager = TinyManager()
    url = await start_server(StreamableHTTPApp(manager=manager))
    with trio.fail_after(10):
        r = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["serverInfo"]["name"] == "tiny"
        session = {**INIT_HEADERS, "mcp-session-id": r.headers["mcp-session-id"]}
        r = await http.post(
            url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        assert r.status_code == 202
        assert manager.notifications == ["notifications/initialized"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x"}}
        r = await http.post(url, json=call, headers=session)
        assert r.status_code == 200
        assert messages(r) == [
            {"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "tiny x"}]}}
        ]
        r = await http.delete(url, headers=session)
        assert r.status_code == 200
        r = await http.post(
            url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=session
        )
        assert r.status_code == 404
