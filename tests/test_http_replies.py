"""How answers travel, over real HTTP: SSE replies (headers, priming, related
messages first), JSON replies, and what a cancelled request gets.

Timeouts (idle, init) are tested elsewhere on a mock clock.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
import trio

from _harness import (
    LATEST,
    assert_accepted,
    assert_sse_headers,
    call,
    notification,
    parse_sse,
    ping,
    start,
)

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# -- SSE replies ----------------------------------------------------------------------


async def test_sse_reply_headers(start_server: StartServer, http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="sse")
        session_id = await h.initialize()
        r = await h.post(call("echo", 2, text="x"), session_id, LATEST)
        assert_sse_headers(r)
        assert r.headers["mcp-session-id"] == session_id


async def test_sse_reply_on_2025_11_25_session_starts_with_priming_event(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="sse", retry_ms=1500)
        session_id = await h.initialize(LATEST)
        async with h.stream("POST", h.headers(session_id, LATEST), call("echo", 3, text="p")) as (
            r,
            sse,
        ):
            assert_sse_headers(r)
            priming = await sse.next()
            assert priming is not None
            assert priming.id
            assert priming.retry == 1500
            assert priming.data_lines == [""]
            assert priming.is_priming
            rest = await sse.rest()
        [reply] = rest
        assert reply.id
        assert reply.id != priming.id
        assert reply.json() == {
            "jsonrpc": "2.0",
            "id": 3,
            "result": {"content": [{"type": "text", "text": "p"}]},
        }


@pytest.mark.parametrize("version", ["2025-03-26", "2025-06-18"])
async def test_sse_reply_on_older_session_has_no_priming_event(
    start_server: StartServer, http: httpx.AsyncClient, version: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="sse")
        session_id = await h.initialize(version)
        r = await h.post(call("echo", 4, text="q"), session_id, version)
        assert_sse_headers(r)
        events = parse_sse(r.text)
        assert [e.is_priming for e in events] == [False]
        [reply] = events
        assert reply.id
        assert reply.retry is None
        assert reply.json()["id"] == 4


async def test_sse_reply_carries_related_log_before_the_result(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="sse")
        session_id = await h.initialize(LATEST)
        r = await h.post(call("chatty", 5), session_id, LATEST)
        assert_sse_headers(r)
        priming, log, reply = parse_sse(r.text)
        assert priming.is_priming
        assert log.json() == {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "working"},
        }
        assert reply.json()["id"] == 5
        assert reply.json()["result"]["content"][0]["text"] == "done"
        ids = [e.id for e in (priming, log, reply)]
        assert None not in ids
        assert len(set(ids)) == 3


# -- JSON replies ---------------------------------------------------------------------


async def test_json_reply_is_one_json_object(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="json")
        session_id = await h.initialize()
        r = await h.post(call("echo", 6, text="j"), session_id, LATEST)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.headers["mcp-session-id"] == session_id
        assert r.json() == {
            "jsonrpc": "2.0",
            "id": 6,
            "result": {"content": [{"type": "text", "text": "j"}]},
        }


async def test_json_reply_mode_sends_related_log_on_the_get_stream(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="json")
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert_sse_headers(r)
            await sse.priming()
            reply = await h.post(call("chatty", 7), session_id, LATEST)
            assert reply.status_code == 200
            assert reply.json()["result"]["content"][0]["text"] == "done"
            log = await sse.next()
            assert log is not None
            assert log.json()["method"] == "notifications/message"
            assert log.json()["params"]["data"] == "working"


# -- cancellation ---------------------------------------------------------------------


async def test_cancelled_request_ends_its_sse_stream_without_a_response(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="sse")
        session_id = await h.initialize()
        async with h.stream("POST", h.headers(session_id, LATEST), call("hang", 31)) as (r, sse):
            assert_sse_headers(r)
            await sse.priming()
            assert h.inflight(session_id) == 1
            cancel = notification("notifications/cancelled", requestId=31, reason="test")
            c = await h.post(cancel, session_id, LATEST)
            assert_accepted(c)
            rest = await sse.rest()
        assert rest == [], rest  # no response (nor anything else) for the cancelled call
        assert h.inflight(session_id) == 0
        assert h.stats().live_sessions == 1
        assert h.session_stats(session_id).idle_deadline < math.inf
        r = await h.post(ping(32), session_id, LATEST)
        assert r.status_code == 200


async def test_cancelled_request_in_json_mode_gets_no_response(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="json")
        session_id = await h.initialize()
        async with trio.open_nursery() as nursery:
            results: list[httpx.Response] = []

            async def call_hang() -> None:
                results.append(await h.post(call("hang", 33), session_id, LATEST))

            nursery.start_soon(call_hang)
            await h.probe.hanging.wait()
            assert h.inflight(session_id) == 1
            cancel = notification("notifications/cancelled", requestId=33)
            c = await h.post(cancel, session_id, LATEST)
            assert_accepted(c)
        [r] = results
        assert_accepted(r)
        assert h.inflight(session_id) == 0
        assert h.stats().live_sessions == 1
