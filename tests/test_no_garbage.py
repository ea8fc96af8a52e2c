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

from test_call_budget import META, make_server
from trio_mcp_sessions import CallLimits, RateLimit, ServerOptions, StreamableHTTPApp
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
