"""POST over real HTTP: Accept, Content-Type, size, JSON and JSON-RPC validity, the
session and version headers, method and path, and the ids error answers echo.

One test per behaviour of the spec checklist (``streamable-http.md`` Part 1):
status code, JSON-RPC error body, and that a refused request leaves no
session behind.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from _harness import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    LATEST,
    LEGACY,
    PARSE_ERROR,
    SERVER_ERROR,
    SESSION_NOT_FOUND,
    SSE_ACCEPT,
    UNSUPPORTED_PROTOCOL_VERSION,
    ReplyMode,
    assert_error,
    call,
    initialize_without,
    messages,
    notification,
    ping,
    start,
)
from conftest import initialize_body
from trio_mcp_sessions import SUPPORTED_PROTOCOL_VERSIONS
from trio_mcp_sessions._protocol._era import ADVERTISED_VERSIONS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# -- POST: Accept, Content-Type, size --------------------------------------------------


@pytest.mark.parametrize(
    ("reply_mode", "accept"),
    [
        ("sse", "application/json"),
        ("sse", "text/event-stream"),
        ("sse", "text/html"),
        ("sse", "application/json, text/event-stream;q=0"),
        ("json", "text/event-stream"),
        ("json", "text/html"),
    ],
)
async def test_post_without_acceptable_accept_is_406(
    start_server: StartServer, http: httpx.AsyncClient, reply_mode: ReplyMode, accept: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode=reply_mode)
        before = h.stats()
        r = await h.post(initialize_body(), headers={"accept": accept})
        assert_error(r, 406, SERVER_ERROR)
        h.assert_nothing_allocated(before)


async def test_post_406_on_a_session_leaves_it_untouched(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        r = await h.post(ping(), session_id, LATEST, headers={"accept": "application/json"})
        assert_error(r, 406, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        assert h.inflight(session_id) == 0


@pytest.mark.parametrize(
    ("reply_mode", "accept"),
    [
        ("sse", SSE_ACCEPT),
        ("sse", "*/*"),
        ("sse", "application/*, text/*"),
        ("json", "application/json"),
        ("json", "*/*"),
        ("json", SSE_ACCEPT),
    ],
)
async def test_post_with_acceptable_accept_is_served(
    start_server: StartServer, http: httpx.AsyncClient, reply_mode: ReplyMode, accept: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode=reply_mode)
        session_id = await h.initialize(accept=accept)
        assert h.stats().created == 1
        r = await h.post(call("echo", 2, text="hi"), session_id, LATEST, headers={"accept": accept})
        assert r.status_code == 200, r.text
        expected = "text/event-stream" if reply_mode == "sse" else "application/json"
        assert r.headers["content-type"].startswith(expected)
        [reply] = messages(r)
        assert reply["id"] == 2
        assert reply["result"]["content"][0]["text"] == "hi"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_post_with_non_json_content_type_is_415(
    start_server: StartServer, http: httpx.AsyncClient, content_type: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(initialize_body(), headers={"content-type": content_type})
        assert_error(r, 415, SERVER_ERROR)
        h.assert_nothing_allocated(before)


async def test_post_json_content_type_with_charset_is_served(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        r = await h.post(
            initialize_body(), headers={"content-type": "Application/JSON; charset=utf-8"}
        )
        assert r.status_code == 200, r.text
        assert h.stats().created == 1


def _big_initialize() -> bytes:
    body = initialize_body()
    body["params"]["clientInfo"]["name"] = "x" * 600
    return json.dumps(body).encode()


async def test_post_declared_body_too_large_is_413(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, max_body_bytes=512)
        before = h.stats()
        payload = _big_initialize()
        r = await h.post(payload)
        assert r.request.headers["content-length"] == str(len(payload))
        assert_error(r, 413, INVALID_REQUEST)
        h.assert_nothing_allocated(before)
        # A body under the limit still gets through.
        r = await h.post(initialize_body())
        assert r.status_code == 200, r.text


async def test_post_streamed_body_too_large_is_413(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, max_body_bytes=512)
        before = h.stats()
        payload = _big_initialize()

        async def chunks() -> AsyncIterator[bytes]:
            for start_at in range(0, len(payload), 200):
                yield payload[start_at : start_at + 200]

        r = await h.http.post(h.url, content=chunks(), headers=h.headers())
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert_error(r, 413, INVALID_REQUEST)
        h.assert_nothing_allocated(before)


# -- POST: JSON and JSON-RPC validity --------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b'{"jsonrpc": "2.0", "id": 1,', b"\xff\xfe{}", b""])
async def test_post_malformed_json_is_400_parse_error(
    start_server: StartServer, http: httpx.AsyncClient, body: bytes
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(body)
        assert_error(r, 400, PARSE_ERROR)
        h.assert_nothing_allocated(before)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"jsonrpc": "2.0", "id": None, "method": "ping"}, id="null-id"),
        pytest.param({"jsonrpc": "2.0", "id": True, "method": "ping"}, id="bool-id"),
        pytest.param([], id="empty-batch"),
        pytest.param(42, id="number"),
        pytest.param("ping", id="string"),
        pytest.param([1, 2], id="batch-of-non-objects"),
        pytest.param({"jsonrpc": "2.0"}, id="no-method-no-id"),
    ],
)
async def test_post_invalid_jsonrpc_is_400_invalid_request(
    start_server: StartServer, http: httpx.AsyncClient, body: Any
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(body)
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)


async def test_post_wrong_jsonrpc_version_echoes_id(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post({"jsonrpc": "1.0", "id": 9, "method": "initialize", "params": {}})
        assert_error(r, 400, INVALID_REQUEST, request_id=9)
        h.assert_nothing_allocated(before)


async def test_post_request_without_session_id_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.post(ping(7), version=LATEST)
        assert_error(r, 400, INVALID_REQUEST, request_id=7)
        h.assert_nothing_allocated(before)


async def test_post_notification_without_session_id_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(notification("notifications/initialized"))
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)


@pytest.mark.parametrize("session_id", ["no-such-session", "x" * 300, "bad id with spaces"])
async def test_post_unknown_session_id_is_404(
    start_server: StartServer, http: httpx.AsyncClient, session_id: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        headers = h.headers(version=LATEST)
        headers["mcp-session-id"] = session_id
        r = await h.http.post(h.url, content=json.dumps(ping(3)).encode("utf-8"), headers=headers)
        assert_error(r, 404, SESSION_NOT_FOUND, maybe_id=3)
        h.assert_nothing_allocated(before)


# -- POST: the MCP-Protocol-Version header --------------------------------------------


async def test_post_unsupported_version_header_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        r = await h.post(ping(4), session_id, "1999-01-01")
        body = assert_error(r, 400, UNSUPPORTED_PROTOCOL_VERSION, maybe_id=4)
        assert body["error"]["data"]["supported"] == list(ADVERTISED_VERSIONS)
        assert body["error"]["data"]["requested"] == "1999-01-01"
        h.assert_nothing_allocated(before)
        assert h.inflight(session_id) == 0


async def test_a_modern_request_without_client_capabilities_is_invalid_params(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    """A 2026-07-28 request is sessionless; its ``_meta`` must say what the client can do."""
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "server/discover",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}},
        }
        r = await h.post(body, version="2026-07-28", headers={"mcp-method": "server/discover"})
        assert_error(r, 400, INVALID_PARAMS, maybe_id=1)
        assert "mcp-session-id" not in r.headers
        h.assert_nothing_allocated(before)


@pytest.mark.parametrize("header_version", SUPPORTED_PROTOCOL_VERSIONS)
@pytest.mark.parametrize("session_version", [LATEST, LEGACY])
async def test_post_any_supported_version_header_is_accepted(
    start_server: StartServer,
    http: httpx.AsyncClient,
    session_version: str,
    header_version: str,
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize(session_version)
        r = await h.post(ping(5), session_id, header_version)
        assert r.status_code == 200, r.text
        assert messages(r) == [{"jsonrpc": "2.0", "id": 5, "result": {}}]


async def test_post_without_version_header_is_accepted(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        r = await h.post(ping(6), session_id)
        assert r.status_code == 200, r.text
        assert messages(r) == [{"jsonrpc": "2.0", "id": 6, "result": {}}]


# -- method and path ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_unsupported_method_is_405_with_allow(
    start_server: StartServer, http: httpx.AsyncClient, method: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.http.request(
            method, h.url, content=json.dumps(initialize_body()).encode(), headers=h.headers()
        )
        assert_error(r, 405, SERVER_ERROR)
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert allowed == {"GET", "POST", "DELETE"}
        h.assert_nothing_allocated(before)


@pytest.mark.parametrize("path", ["/other", "/mcp/extra", "/"])
async def test_other_path_is_404(
    start_server: StartServer, http: httpx.AsyncClient, path: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        url = h.url.removesuffix("/mcp") + path
        r = await h.http.post(url, json=initialize_body(), headers=h.headers())
        assert r.status_code == 404
        assert_error(r, 404, SERVER_ERROR)
        h.assert_nothing_allocated(before)


# -- error ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "missing-session",
        "unknown-session",
        "bad-version-header",
        "sessionless-modern-version",
        "initialize-with-session",
        "initialize-bad-params",
    ],
)
async def test_http_error_echoes_readable_request_id(
    start_server: StartServer, http: httpx.AsyncClient, case: str
) -> None:
    """An error answer to a request whose id was read echoes that id (checklist item 3)."""
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        request_id = 50
        if case == "missing-session":
            r = await h.post(ping(request_id), version=LATEST)
            status, code = 400, INVALID_REQUEST
        elif case == "unknown-session":
            r = await h.post(ping(request_id), "no-such-session", LATEST)
            status, code = 404, SESSION_NOT_FOUND
        elif case == "bad-version-header":
            r = await h.post(ping(request_id), session_id, "1999-01-01")
            status, code = 400, UNSUPPORTED_PROTOCOL_VERSION
        elif case == "sessionless-modern-version":
            body = {"jsonrpc": "2.0", "id": request_id, "method": "server/discover"}
            r = await h.post(body, version="2026-07-28")
            status, code = 400, INVALID_PARAMS  # the 2026-07-28 ladder: no _meta
        elif case == "initialize-with-session":
            r = await h.post(initialize_body(request_id=request_id), session_id)
            status, code = 400, INVALID_REQUEST
        else:
            r = await h.post(initialize_without("protocolVersion") | {"id": request_id})
            status, code = 400, INVALID_PARAMS
        assert_error(r, status, code, request_id=request_id)
