"""A request, answered or refused, leaves no reference cycles behind.

Cycles wait for the garbage collector, and a flood of requests that each
leave some makes the collector's pauses the other clients' p99 (measured:
a flood of 429s on 64 connections doubled it; with the cycle gone it did
not move). So every common answer is checked here: with the collector off,
N requests, then nothing for it to find.
"""

from __future__ import annotations

import gc
import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from test_call_budget import META, make_server
from trio_mcp_sessions import (
    CallLimits,
    InvalidToken,
    RateLimit,
    ResourceServer,
    ServerOptions,
    StreamableHTTPApp,
    VerifiedToken,
)

if TYPE_CHECKING:
    from collections.abc import MutableMapping


def modern(
    request_id: int, *, meta: bool = True, name: str = "echo", body_extra: bytes = b""
) -> tuple[dict[str, Any], bytes]:
    params: dict[str, Any] = {"name": "echo", "arguments": {"text": "x"}}
    if meta:
        params["_meta"] = META
    body = json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    )
    data = body.encode() + body_extra
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", name.encode()),
    ]
    return {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }, data


async def answer(app: StreamableHTTPApp, scope: dict[str, Any], body: bytes) -> int:
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


CASES: dict[str, tuple[CallLimits, dict[str, Any], int]] = {
    "answered": (CallLimits(), {}, 200),
    "over the call budget": (CallLimits(rate_limit_per_client=RateLimit(1, 600)), {}, 429),
    "over the per-client in-flight cap": (CallLimits(max_inflight_per_client=1), {}, 429),
    "over the global in-flight cap": (CallLimits(max_inflight=1), {}, 503),
    "no _meta": (CallLimits(), {"meta": False}, 400),
    "Mcp-Name not the body's": (CallLimits(), {"name": "other"}, 400),
    "not JSON": (CallLimits(), {"body_extra": b"}"}, 400),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_an_answer_leaves_no_reference_cycles(case: str) -> None:
    limits, shape, status = CASES[case]
    app = StreamableHTTPApp(
        make_server(), options=ServerOptions(call_limits=limits, refusal_delay=0)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(app.run)
        if case.startswith("over the") and "in-flight" in case:
            held = app._inflight.acquire_nowait("127.0.0.1")  # the cap is full
        for request_id in (1, 2):  # warm: first-use caches are not garbage
            await answer(app, *modern(request_id, **shape))
        gc.collect()
        gc.disable()
        try:
            statuses = {await answer(app, *modern(request_id, **shape)) for request_id in range(50)}
            found = gc.collect()
        finally:
            gc.enable()
        assert statuses == {status}
        assert found == 0, f"{found} objects in cycles after 50 requests"
        if case.startswith("over the") and "in-flight" in case:
            held.release()
        nursery.cancel_scope.cancel()


class _Tokens:
    """A verifier of one good token (``good``, scope ``mcp``); others are invalid."""

    async def verify(self, token: str) -> VerifiedToken:
        await trio.lowlevel.checkpoint()
        if token != "good":
            raise InvalidToken("unknown token")
        return VerifiedToken("https://as", "alice", "c", frozenset({"mcp"}))


AUTH_CASES: dict[str, tuple[bytes | None, str, int]] = {
    "a verified call": (b"Bearer good", "echo", 200),
    "no credentials": (None, "echo", 401),
    "malformed credentials": (b"Bearer a b", "echo", 400),
    "an invalid token": (b"Bearer bad", "echo", 401),
    "a missing tool scope": (b"Bearer good", "guarded", 403),
}


@pytest.mark.parametrize("case", list(AUTH_CASES))
async def test_an_authorization_answer_leaves_no_reference_cycles(case: str) -> None:
    authorization, tool, status = AUTH_CASES[case]
    server = make_server()

    @server.tool(scopes={"admin"})
    async def guarded(text: str) -> str:
        """Needs admin."""
        return text

    auth = ResourceServer(
        "http://127.0.0.1:8000/mcp",
        ["https://as"],
        _Tokens(),
        scopes={"mcp"},
        max_failed_verifications=None,  # 50 bad tokens in a row: no 429 here
    )
    app = StreamableHTTPApp(server, auth=auth, options=ServerOptions(refusal_delay=0))

    def request(request_id: int) -> tuple[dict[str, Any], bytes]:
        scope, body = modern(request_id, name=tool)
        body = body.replace(b'"echo"', json.dumps(tool).encode())
        if authorization is not None:
            scope["headers"].append((b"authorization", authorization))
        return scope, body

    async with trio.open_nursery() as nursery:
        await nursery.start(app.run)
        for request_id in (1, 2):
            await answer(app, *request(request_id))
        gc.collect()
        gc.disable()
        try:
            statuses = {await answer(app, *request(request_id)) for request_id in range(50)}
            found = gc.collect()
        finally:
            gc.enable()
        assert statuses == {status}
        assert found == 0, f"{found} objects in cycles after 50 requests"
        nursery.cancel_scope.cancel()
