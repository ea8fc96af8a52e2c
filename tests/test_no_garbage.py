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
from typing import Any

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
from trio_mcp_sessions.testing import McpTestClient, open_test_client


def modern(
    request_id: int, *, meta: bool = True, name: str = "echo", body_extra: bytes = b""
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    params: dict[str, Any] = {"name": "echo", "arguments": {"text": "x"}}
    if meta:
        params["_meta"] = META
    body = json.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    )
    headers = [
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", name.encode()),
    ]
    return body.encode() + body_extra, headers


async def answer(client: McpTestClient, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One request through the test kit (which must itself leave no cycles: see below)."""
    return (await client.send("POST", body, headers=headers)).status


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
    async with open_test_client(app) as client:
        if case.startswith("over the") and "in-flight" in case:
            held = app._inflight.acquire_nowait("127.0.0.1")  # the cap is full
        for request_id in (1, 2):  # warm: first-use caches are not garbage
            await answer(client, *modern(request_id, **shape))
        gc.collect()
        gc.disable()
        try:
            statuses = {
                await answer(client, *modern(request_id, **shape)) for request_id in range(50)
            }
            found = gc.collect()
        finally:
            gc.enable()
        assert statuses == {status}
        assert found == 0, f"{found} objects in cycles after 50 requests"
        if case.startswith("over the") and "in-flight" in case:
            held.release()


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

    def request(request_id: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        body, headers = modern(request_id, name=tool)
        body = body.replace(b'"echo"', json.dumps(tool).encode())
        if authorization is not None:
            headers.append((b"authorization", authorization))
        return body, headers

    async with open_test_client(app) as client:
        for request_id in (1, 2):
            await answer(client, *request(request_id))
        gc.collect()
        gc.disable()
        try:
            statuses = {await answer(client, *request(n)) for n in range(50)}
            found = gc.collect()
        finally:
            gc.enable()
        assert statuses == {status}
        assert found == 0, f"{found} objects in cycles after 50 requests"
