"""What a POST body carries, over real HTTP: initialize, batches, notifications and
responses from the client.

Status code, JSON-RPC error body, and that a refused request leaves no
session behind (``streamable-http.md`` Part 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from _harness import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    LATEST,
    LEGACY,
    SERVER_ERROR,
    ReplyMode,
    assert_accepted,
    assert_error,
    assert_sse_headers,
    call,
    initialize_with,
    initialize_without,
    messages,
    notification,
    ping,
    start,
)
from conftest import initialize_body
from trio_mcp_sessions import SUPPORTED_PROTOCOL_VERSIONS

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# -- POST: batches ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param([initialize_body()], id="alone"),
        pytest.param([initialize_body(), ping(2)], id="with-ping"),
        pytest.param(
            [initialize_body(), notification("notifications/initialized")], id="with-initialized"
        ),
    ],
)
async def test_initialize_inside_a_batch_is_400(
    start_server: StartServer, http: httpx.AsyncClient, batch: list[Any]
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(batch, version=LEGACY)
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18"])
async def test_batch_on_a_modern_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient, version: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize(version)
        before = h.stats()
        r = await h.post([ping(1), ping(2)], session_id, version)
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)
        assert h.inflight(session_id) == 0


@pytest.mark.parametrize("reply_mode", ["sse", "json"])
async def test_batch_on_a_2025_03_26_session_answers_every_request(
    start_server: StartServer, http: httpx.AsyncClient, reply_mode: ReplyMode
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode=reply_mode)
        session_id = await h.initialize(LEGACY)
        r = await h.post([ping(1), call("echo", 2, text="b")], session_id, LEGACY)
        assert r.status_code == 200, r.text
        if reply_mode == "json":
            assert r.headers["content-type"].startswith("application/json")
            assert isinstance(r.json(), list)
        else:
            assert_sse_headers(r)
        replies = {m["id"]: m for m in messages(r)}
        assert set(replies) == {1, 2}
        assert replies[1]["result"] == {}
        assert replies[2]["result"]["content"][0]["text"] == "b"


async def test_batch_of_notifications_on_a_2025_03_26_session_is_202(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize(LEGACY)
        batch = [
            notification("notifications/roots/list_changed"),
            {"jsonrpc": "2.0", "id": 77, "result": {}},
        ]
        r = await h.post(batch, session_id, LEGACY)
        assert_accepted(r)


# -- POST: initialize -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(initialize_without("protocolVersion"), id="no-protocolVersion"),
        pytest.param(initialize_with("protocolVersion", 20251125), id="numeric-version"),
        pytest.param(initialize_with("protocolVersion", ""), id="empty-version"),
        pytest.param(initialize_with("capabilities", []), id="capabilities-not-object"),
        pytest.param(initialize_with("clientInfo", "me"), id="clientInfo-not-object"),
        pytest.param({"jsonrpc": "2.0", "id": 11, "method": "initialize"}, id="no-params"),
    ],
)
async def test_initialize_with_invalid_params_is_400(
    start_server: StartServer, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(body)
        assert_error(r, 400, INVALID_PARAMS, request_id=11)
        h.assert_nothing_allocated(before)


async def test_a_session_closed_while_initialize_runs_gets_503_not_a_dead_id(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)

        @h.manager.server.on_initialize
        async def shut_down_meanwhile(client: object, is_restored: bool) -> None:
            await h.manager.aclose()  # every session closes, this one included
            await trio.testing.wait_all_tasks_blocked()  # ...by the time the hook returns

        r = await h.http.post(h.url, json=initialize_body(LATEST), headers=h.headers())
        body = assert_error(r, 503, SERVER_ERROR, request_id=1)
        assert "closed during initialize" in body["error"]["message"]
        assert "mcp-session-id" not in r.headers
        assert h.stats().live_sessions == 0
        assert h.stats().slots_held == 0


async def test_initialize_with_unsupported_version_counter_offers_latest(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        r = await h.post(initialize_body("1999-01-01", 12))
        assert r.status_code == 200, r.text
        [reply] = messages(r)
        assert reply["id"] == 12
        assert reply["result"]["protocolVersion"] == "2025-11-25"
        assert r.headers["mcp-session-id"]
        assert h.stats().created == 1
        assert h.stats().live_sessions == 1


@pytest.mark.parametrize("version", SUPPORTED_PROTOCOL_VERSIONS)
async def test_initialize_echoes_a_supported_version(
    start_server: StartServer, http: httpx.AsyncClient, version: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        r = await h.post(initialize_body(version, 13))
        assert r.status_code == 200, r.text
        [reply] = messages(r)
        assert reply["result"]["protocolVersion"] == version
        assert reply["result"]["serverInfo"] == {"name": "transport-tests", "version": "1.0"}
        session_id = r.headers["mcp-session-id"]
        assert all(0x21 <= ord(c) <= 0x7E for c in session_id)
        assert len(session_id) >= 16


async def test_initialize_with_session_header_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        r = await h.post(initialize_body(request_id=14), session_id)
        assert_error(r, 400, INVALID_REQUEST, request_id=14)
        h.assert_nothing_allocated(before)


async def test_session_ids_are_distinct(start_server: StartServer, http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        ids = {await h.initialize() for _ in range(5)}
        assert len(ids) == 5
        assert h.stats().live_sessions == 5


# -- POST: notifications and client responses ----------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(notification("notifications/roots/list_changed"), id="notification"),
        pytest.param(
            notification("notifications/cancelled", requestId=12345), id="cancel-unknown-request"
        ),
        pytest.param(
            notification("notifications/progress", progressToken="t", progress=1),
            id="progress",
        ),
    ],
)
async def test_notification_is_202_with_empty_body(
    start_server: StartServer, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        r = await h.post(body, session_id, LATEST)
        assert_accepted(r)
        h.assert_nothing_allocated(before)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"jsonrpc": "2.0", "id": 999, "result": {}}, id="result"),
        pytest.param(
            {"jsonrpc": "2.0", "id": "nope", "error": {"code": -1, "message": "no"}}, id="error"
        ),
    ],
)
async def test_response_to_unknown_server_request_is_202(
    start_server: StartServer, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        r = await h.post(body, session_id, LATEST)
        assert_accepted(r)


async def test_request_id_still_in_flight_is_refused(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("POST", h.headers(session_id, LATEST), call("hang", 21)) as (r, sse):
            assert r.status_code == 200
            await sse.priming()
            assert h.inflight(session_id) == 1
            again = await h.post(ping(21), session_id, LATEST)
            assert_error(again, 400, INVALID_REQUEST, request_id=21)
            assert h.inflight(session_id) == 1
