"""The Streamable HTTP transport end to end, over a real Hypercorn trio worker.

One test per behaviour of the spec checklist (``streamable-http.md`` Part 1):
status code, JSON-RPC error body, and that a refused request leaves no
session behind. Timeouts (idle, init) are tested elsewhere on a mock clock.
"""

from __future__ import annotations

import json
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pytest
import trio
import trio.testing

from conftest import StartServer, TracebackRecorder, initialize_body
from trio_mcp_sessions import (
    SUPPORTED_PROTOCOL_VERSIONS,
    BoundedSessionManager,
    Context,
    HostPolicy,
    McpServer,
    StreamableHTTPApp,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    import httpx

    from trio_mcp_sessions import ManagerStatistics

LATEST = "2025-11-25"
LEGACY = "2025-03-26"
SSE_ACCEPT = "application/json, text/event-stream"
JSON_ACCEPT = "application/json"
ReplyMode = Literal["sse", "json"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_ERROR = -32000
SESSION_NOT_FOUND = -32001
UNSUPPORTED_PROTOCOL_VERSION = -32022


# -- the server under test ------------------------------------------------------------


@dataclass
class Probe:
    """What the tools report to the test (server and test share one trio run)."""

    hanging: trio.Event = field(default_factory=trio.Event)


def make_server(probe: Probe) -> McpServer:
    server = McpServer("transport-tests", "1.0")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged.

        Args:
            text: What to return.
        """
        return text

    @server.tool()
    async def hang() -> str:
        """Sleep until cancelled."""
        probe.hanging.set()
        await trio.sleep_forever()

    @server.tool()
    async def slow(delay: float = 0.3) -> str:
        """Sleep a little, then answer.

        Args:
            delay: Seconds to sleep.
        """
        await trio.sleep(delay)
        return "slept"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Log one line, then answer."""
        await ctx.info("working")
        return "done"

    @server.tool()
    async def firehose(ctx: Context) -> str:
        """Log without pause until cancelled."""
        while True:
            await ctx.info("tick")

    return server


# -- helpers --------------------------------------------------------------------------


@dataclass
class SseEvent:
    id: str | None = None
    retry: int | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)

    @property
    def is_priming(self) -> bool:
        return self.id is not None and self.data == ""

    def json(self) -> Any:
        return json.loads(self.data)


class _SseParser:
    """Line-by-line SSE parsing (events end at a blank line; comments skipped)."""

    def __init__(self) -> None:
        self._event = SseEvent()
        self._seen = False

    def feed(self, line: str) -> SseEvent | None:
        if line == "":
            if not self._seen:
                return None
            event, self._event, self._seen = self._event, SseEvent(), False
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self._seen = True
        if name == "id":
            self._event.id = value
        elif name == "retry":
            self._event.retry = int(value)
        elif name == "event":
            self._event.event = value
        elif name == "data":
            self._event.data_lines.append(value)
        return None

    def finish(self) -> SseEvent | None:
        return self.feed("")


def parse_sse(text: str) -> list[SseEvent]:
    parser = _SseParser()
    events = [e for line in text.splitlines() if (e := parser.feed(line)) is not None]
    last = parser.finish()
    return [*events, last] if last is not None else events


class SseReader:
    """Events of a streamed httpx response, read by a background task.

    The task is cancelled when the stream closes: the cancellation unwinds
    httpx's chain of async generators, so none is left for the garbage
    collector (trio would warn about it).
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[SseEvent](math.inf)

    async def pump(self, response: httpx.Response) -> None:
        parser = _SseParser()
        with self._send:
            # No checkpoint outside the iteration: see the class docstring.
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    self._send.send_nowait(event)
            last = parser.finish()
            if last is not None:
                self._send.send_nowait(last)

    async def next(self) -> SseEvent | None:
        """The next event, or ``None`` when the stream has ended."""
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return None

    async def rest(self) -> list[SseEvent]:
        """Every remaining event, until the server ends the stream."""
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events


def messages(response: httpx.Response) -> list[Any]:
    """The JSON-RPC messages of a complete 200 answer, JSON or SSE (priming skipped)."""
    content_type = response.headers["content-type"]
    if content_type.startswith("text/event-stream"):
        return [e.json() for e in parse_sse(response.text) if e.data]
    assert content_type.startswith("application/json"), content_type
    body = response.json()
    return body if isinstance(body, list) else [body]


_ABSENT = object()


def assert_error(
    response: httpx.Response,
    status: int,
    code: int,
    *,
    request_id: object = _ABSENT,
    maybe_id: object = _ABSENT,
) -> dict[str, Any]:
    """Check an HTTP error answer and its JSON-RPC error body.

    ``request_id``: the body must echo it; by default the body must have no
    ``id``. ``maybe_id``: the body may echo it or leave ``id`` out (for the
    cases :func:`test_http_error_echoes_readable_request_id` covers).
    """
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["jsonrpc"] == "2.0"
    assert "result" not in body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["code"] == code, body
    if request_id is not _ABSENT:
        assert body.get("id") == request_id, body
    elif maybe_id is not _ABSENT:
        assert "id" not in body or body["id"] == maybe_id, body
    else:
        assert "id" not in body, body
    return body


def ping(request_id: int | str = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def call(name: str, request_id: int | str = 1, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def notification(method: str, **params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        out["params"] = params
    return out


@dataclass
class Harness:
    app: StreamableHTTPApp
    url: str
    http: httpx.AsyncClient
    probe: Probe

    @property
    def manager(self) -> BoundedSessionManager:
        manager = self.app.manager
        assert isinstance(manager, BoundedSessionManager)
        return manager

    def stats(self) -> ManagerStatistics:
        return self.manager.statistics()

    def assert_nothing_allocated(self, before: ManagerStatistics) -> None:
        after = self.stats()
        assert after.created == before.created, (before, after)
        assert after.live_sessions == before.live_sessions, (before, after)

    def inflight(self, session_id: str) -> int:
        return len(self.manager.session(session_id)._inflight)

    @staticmethod
    def headers(
        session_id: str | None = None,
        version: str | None = None,
        *,
        accept: str = SSE_ACCEPT,
    ) -> dict[str, str]:
        out = {"accept": accept, "content-type": "application/json"}
        if session_id is not None:
            out["mcp-session-id"] = session_id
        if version is not None:
            out["mcp-protocol-version"] = version
        return out

    @staticmethod
    def get_headers(session_id: str | None = None, version: str | None = LATEST) -> dict[str, str]:
        out = {"accept": "text/event-stream"}
        if session_id is not None:
            out["mcp-session-id"] = session_id
        if version is not None:
            out["mcp-protocol-version"] = version
        return out

    async def post(
        self,
        body: Any,
        session_id: str | None = None,
        version: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = self.headers(session_id, version)
        all_headers.update(headers or {})
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.http.post(self.url, content=content, headers=all_headers)

    async def initialize(self, version: str = LATEST, *, accept: str = SSE_ACCEPT) -> str:
        """A ready session: ``initialize``, then ``notifications/initialized``."""
        r = await self.http.post(
            self.url, json=initialize_body(version), headers=self.headers(accept=accept)
        )
        assert r.status_code == 200, r.text
        session_id = r.headers["mcp-session-id"]
        r = await self.post(
            notification("notifications/initialized"),
            session_id,
            version,
            headers={"accept": accept},
        )
        assert r.status_code == 202, r.text
        return session_id

    async def get_until_served(self, session_id: str) -> SseEvent | None:
        """GET the session's stream until it is free (409 meanwhile); its first event."""
        while True:
            async with self.stream("GET", self.get_headers(session_id)) as (r, sse):
                if r.status_code == 200:
                    return await sse.next()
                assert_error(r, 409, SERVER_ERROR)
            await trio.sleep(0.02)

    @asynccontextmanager
    async def stream(
        self, method: str, headers: dict[str, str], body: Any = None
    ) -> AsyncIterator[tuple[httpx.Response, SseReader]]:
        """A streamed request; leaving the block closes the response (disconnects).

        An SSE answer is read event by event from the reader; any other
        answer is read completely before the block starts.
        """
        content = None if body is None else json.dumps(body).encode()
        async with self.http.stream(method, self.url, headers=headers, content=content) as r:
            reader = SseReader()
            if not r.headers.get("content-type", "").startswith("text/event-stream"):
                await r.aread()
                yield r, reader
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader.pump, r)
                yield r, reader
                nursery.cancel_scope.cancel()


async def start(start_server: StartServer, http: httpx.AsyncClient, **options: Any) -> Harness:
    probe = Probe()
    app = StreamableHTTPApp(make_server(probe), **options)
    url = await start_server(app)
    return Harness(app, url, http, probe)


def assert_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    cache_control = [v.strip() for v in response.headers["cache-control"].split(",")]
    assert "no-cache" in cache_control
    assert response.headers["x-accel-buffering"] == "no"


@pytest.fixture(autouse=True)
def _no_tracebacks(tracebacks: TracebackRecorder) -> Iterator[None]:
    yield
    assert not tracebacks.records, tracebacks.describe()


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
        assert body["error"]["data"]["supported"] == list(SUPPORTED_PROTOCOL_VERSIONS)
        assert body["error"]["data"]["requested"] == "1999-01-01"
        h.assert_nothing_allocated(before)
        assert h.inflight(session_id) == 0


async def test_sessionless_modern_request_is_400_unsupported_version(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    """A 2026-07-28 client's ``server/discover`` learns which versions we speak."""
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "server/discover",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}},
        }
        r = await h.post(body, version="2026-07-28")
        error = assert_error(r, 400, UNSUPPORTED_PROTOCOL_VERSION, maybe_id=1)
        assert set(error["error"]["data"]["supported"]) == set(SUPPORTED_PROTOCOL_VERSIONS)
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
        assert r.status_code == 202, r.text
        assert r.content == b""


# -- POST: initialize -------------------------------------------------------------------


def _initialize_without(key: str) -> dict[str, Any]:
    body = initialize_body(request_id=11)
    del body["params"][key]
    return body


def _initialize_with(key: str, value: Any) -> dict[str, Any]:
    body = initialize_body(request_id=11)
    body["params"][key] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_initialize_without("protocolVersion"), id="no-protocolVersion"),
        pytest.param(_initialize_with("protocolVersion", 20251125), id="numeric-version"),
        pytest.param(_initialize_with("protocolVersion", ""), id="empty-version"),
        pytest.param(_initialize_with("capabilities", []), id="capabilities-not-object"),
        pytest.param(_initialize_with("clientInfo", "me"), id="clientInfo-not-object"),
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
        assert h.manager.limiter.borrowed_tokens == 0


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
        assert r.status_code == 202, r.text
        assert r.content == b""
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
        assert r.status_code == 202, r.text
        assert r.content == b""


async def test_request_id_still_in_flight_is_refused(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("POST", h.headers(session_id, LATEST), call("hang", 21)) as (r, sse):
            assert r.status_code == 200
            assert (await sse.next()) is not None  # priming
            assert h.inflight(session_id) == 1
            again = await h.post(ping(21), session_id, LATEST)
            assert_error(again, 400, INVALID_REQUEST, request_id=21)
            assert h.inflight(session_id) == 1


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
            priming = await sse.next()
            assert priming is not None
            assert priming.is_priming
            reply = await h.post(call("chatty", 7), session_id, LATEST)
            assert reply.status_code == 200
            assert reply.json()["result"]["content"][0]["text"] == "done"
            log = await sse.next()
            assert log is not None
            assert log.json()["method"] == "notifications/message"
            assert log.json()["params"]["data"] == "working"


# -- Host and Origin ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"host": "evil.example.com"}, id="host"),
        pytest.param({"host": "evil.example.com:80"}, id="host-with-port"),
        pytest.param({"origin": "http://evil.example.com"}, id="origin"),
        pytest.param({"origin": "null"}, id="origin-null"),
    ],
)
async def test_foreign_host_or_origin_is_403(
    start_server: StartServer, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(initialize_body(), headers=headers)
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)


async def test_foreign_origin_is_403_on_every_method(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        evil = {"origin": "http://evil.example.com"}
        r = await h.post(ping(), session_id, LATEST, headers=evil)
        assert_error(r, 403, SERVER_ERROR)
        r = await h.http.get(h.url, headers={**h.get_headers(session_id), **evil})
        assert_error(r, 403, SERVER_ERROR)
        r = await h.http.delete(h.url, headers={**h.headers(session_id, LATEST), **evil})
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        assert h.manager.get_session(session_id) is not None


@pytest.mark.parametrize(
    "origin", ["http://localhost:1234", "http://127.0.0.1:9", "https://localhost"]
)
async def test_loopback_origin_is_accepted(
    start_server: StartServer, http: httpx.AsyncClient, origin: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        r = await h.post(initialize_body(), headers={"origin": origin})
        assert r.status_code == 200, r.text
        assert h.stats().created == 1


async def test_host_policy_allows_a_configured_host(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(
            start_server, http, host_policy=HostPolicy(allowed_hosts=("mcp.example.com",))
        )
        r = await h.post(initialize_body(), headers={"host": "mcp.example.com"})
        assert r.status_code == 200, r.text
        assert h.stats().created == 1
        before = h.stats()
        r = await h.post(initialize_body())  # Host: 127.0.0.1:PORT is not on the list
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)


async def test_host_policy_accepts_same_origin_requests_for_a_configured_host(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    """Behind a reverse proxy on loopback, a page served from the allowed host may call us.

    ``Host: mcp.example.com`` is allowed explicitly; the browser then sends
    ``Origin: https://mcp.example.com``, the very same host. That is not a
    DNS-rebinding attack, so it should be served, while a foreign origin
    still gets 403.
    """
    with trio.fail_after(10):
        h = await start(
            start_server, http, host_policy=HostPolicy(allowed_hosts=("mcp.example.com",))
        )
        before = h.stats()
        r = await h.post(
            initialize_body(), headers={"host": "mcp.example.com", "origin": "https://evil.com"}
        )
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        r = await h.post(
            initialize_body(),
            headers={"host": "mcp.example.com", "origin": "https://mcp.example.com"},
        )
        assert r.status_code == 200, r.text
        assert h.stats().created == 1


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


# -- GET ------------------------------------------------------------------------------


async def test_get_without_sse_accept_is_406(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        headers = {**h.get_headers(session_id), "accept": "application/json"}
        r = await h.http.get(h.url, headers=headers)
        assert_error(r, 406, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        # No stream was attached: a proper GET still gets through.
        async with h.stream("GET", h.get_headers(session_id)) as (r, _):
            assert r.status_code == 200


async def test_get_without_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.http.get(h.url, headers=h.get_headers())
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)


async def test_get_unknown_session_is_404(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.http.get(h.url, headers=h.get_headers("no-such-session"))
        assert_error(r, 404, SESSION_NOT_FOUND)
        h.assert_nothing_allocated(before)


async def test_get_unsupported_version_header_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        r = await h.http.get(h.url, headers=h.get_headers(session_id, "1999-01-01"))
        body = assert_error(r, 400, UNSUPPORTED_PROTOCOL_VERSION)
        assert body["error"]["data"]["supported"] == list(SUPPORTED_PROTOCOL_VERSIONS)


async def test_get_opens_an_sse_stream(start_server: StartServer, http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert_sse_headers(r)
            assert r.headers["mcp-session-id"] == session_id
            priming = await sse.next()
            assert priming is not None
            assert priming.is_priming
            assert priming.retry == 1000
            # The stream stays open: nothing more arrives for a moment.
            with trio.move_on_after(0.2) as idle:
                await sse.next()
            assert idle.cancelled_caught


async def test_second_concurrent_get_is_409(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert r.status_code == 200
            assert (await sse.next()) is not None
            before = h.stats()
            second = await h.http.get(h.url, headers=h.get_headers(session_id))
            assert_error(second, 409, SERVER_ERROR)
            h.assert_nothing_allocated(before)


async def test_get_after_the_first_get_disconnects_is_served(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert r.status_code == 200
            assert (await sse.next()) is not None
        # The server notices the disconnect asynchronously: poll briefly.
        first = await h.get_until_served(session_id)
        assert first is not None
        assert first.is_priming


async def test_a_busy_get_stream_notices_its_client_leaving(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    # JSON replies: the call's logs go to the GET stream, one after another
    # without a pause, so its writer is never idle; it must notice the
    # disconnect anyway, or the session could never open a GET stream again.
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="json")
        session_id = await h.initialize(accept=JSON_ACCEPT)
        async with trio.open_nursery() as nursery:

            async def call_firehose() -> None:
                await h.post(
                    call("firehose", 90), session_id, LATEST, headers={"accept": JSON_ACCEPT}
                )

            async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
                assert r.status_code == 200
                nursery.start_soon(call_firehose)
                for _ in range(20):
                    assert (await sse.next()) is not None
            assert (await h.get_until_served(session_id)) is not None
            nursery.cancel_scope.cancel()


# -- GET with Last-Event-ID (resumption) ----------------------------------------------


async def test_resume_after_post_disconnect_replays_the_result(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        headers = h.headers(session_id, LATEST)
        async with h.stream("POST", headers, call("slow", 42, delay=0.3)) as (r, sse):
            assert_sse_headers(r)
            priming = await sse.next()
            assert priming is not None
            assert priming.is_priming
            assert priming.id is not None
        # Disconnected before the result. Resume on GET.
        resume_headers = {**h.get_headers(session_id), "last-event-id": priming.id}
        async with h.stream("GET", resume_headers) as (r, sse):
            assert_sse_headers(r)
            events = await sse.rest()
        assert events, "the resumed stream carried nothing"
        assert not any(e.is_priming for e in events)
        assert all(e.id for e in events)
        replies = [e.json() for e in events if e.data]
        assert replies == [
            {
                "jsonrpc": "2.0",
                "id": 42,
                "result": {"content": [{"type": "text", "text": "slept"}]},
            }
        ]
        assert h.inflight(session_id) == 0


async def test_resume_of_a_finished_stream_replays_from_the_store(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        r = await h.post(call("chatty", 43), session_id, LATEST)
        priming, log, reply = parse_sse(r.text)
        assert priming.id is not None
        assert log.id is not None
        # Everything after the log event, i.e. the result alone.
        resume_headers = {**h.get_headers(session_id), "last-event-id": log.id}
        async with h.stream("GET", resume_headers) as (r, sse):
            assert r.status_code == 200
            events = await sse.rest()
        assert [(e.id, e.json()) for e in events] == [(reply.id, reply.json())]


@pytest.mark.parametrize("last_event_id", ["nosuchstream_1", "garbage", "abc_", "_5", "abc_-1"])
async def test_resume_with_unknown_or_malformed_last_event_id_is_400(
    start_server: StartServer, http: httpx.AsyncClient, last_event_id: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        headers = {**h.get_headers(session_id), "last-event-id": last_event_id}
        r = await h.http.get(h.url, headers=headers)
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)
        # The failed resume attached nothing: a plain GET still works.
        async with h.stream("GET", h.get_headers(session_id)) as (r, _):
            assert r.status_code == 200


async def test_resume_with_an_event_id_from_another_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        first = await h.initialize()
        other = await h.initialize()
        r = await h.post(call("echo", 44, text="mine"), first, LATEST)
        [_, reply] = parse_sse(r.text)
        assert reply.id is not None
        headers = {**h.get_headers(other), "last-event-id": reply.id}
        r = await h.http.get(h.url, headers=headers)
        assert_error(r, 400, INVALID_REQUEST)


# -- DELETE ---------------------------------------------------------------------------


async def test_delete_without_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.http.delete(h.url, headers=h.headers(version=LATEST))
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)
        assert h.stats().closed == before.closed


async def test_delete_unknown_session_is_404(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.http.delete(h.url, headers=h.headers("no-such-session", LATEST))
        assert_error(r, 404, SESSION_NOT_FOUND)
        h.assert_nothing_allocated(before)
        assert h.stats().closed == before.closed


async def test_delete_ends_the_session(start_server: StartServer, http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        keep = await h.initialize()
        r = await h.http.delete(h.url, headers=h.headers(session_id, LATEST))
        assert r.status_code == 200
        stats = h.stats()
        assert stats.live_sessions == 1
        assert stats.closed == 1
        assert stats.closed_by_reason == {"deleted": 1}
        r = await h.post(ping(1), session_id, LATEST)
        assert_error(r, 404, SESSION_NOT_FOUND, maybe_id=1)
        r = await h.http.get(h.url, headers=h.get_headers(session_id))
        assert_error(r, 404, SESSION_NOT_FOUND)
        r = await h.http.delete(h.url, headers=h.headers(session_id, LATEST))
        assert_error(r, 404, SESSION_NOT_FOUND)
        # The other session is untouched.
        r = await h.post(ping(2), keep, LATEST)
        assert r.status_code == 200
        assert h.stats().live_sessions == 1


async def test_delete_ends_the_open_get_stream(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert r.status_code == 200
            assert (await sse.next()) is not None
            deleted = await h.http.delete(h.url, headers=h.headers(session_id, LATEST))
            assert deleted.status_code == 200
            assert await sse.rest() == []
        assert h.stats().live_sessions == 0


async def test_delete_ends_in_flight_requests_and_their_streams(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("POST", h.headers(session_id, LATEST), call("hang", 8)) as (r, sse):
            assert r.status_code == 200
            assert (await sse.next()) is not None
            deleted = await h.http.delete(h.url, headers=h.headers(session_id, LATEST))
            assert deleted.status_code == 200
            assert await sse.rest() == []
        assert h.stats().live_sessions == 0


# -- cancellation ---------------------------------------------------------------------


async def test_cancelled_request_ends_its_sse_stream_without_a_response(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="sse")
        session_id = await h.initialize()
        async with h.stream("POST", h.headers(session_id, LATEST), call("hang", 31)) as (r, sse):
            assert_sse_headers(r)
            priming = await sse.next()
            assert priming is not None
            assert priming.is_priming
            assert h.inflight(session_id) == 1
            cancel = notification("notifications/cancelled", requestId=31, reason="test")
            c = await h.post(cancel, session_id, LATEST)
            assert c.status_code == 202
            assert c.content == b""
            rest = await sse.rest()
        assert rest == [], rest  # no response (nor anything else) for the cancelled call
        assert h.inflight(session_id) == 0
        assert h.stats().live_sessions == 1
        assert h.manager.session(session_id).idle_deadline < math.inf
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
            assert c.status_code == 202
        [r] = results
        assert r.status_code == 202
        assert r.content == b""
        assert h.inflight(session_id) == 0
        assert h.stats().live_sessions == 1


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
            status, code = 400, UNSUPPORTED_PROTOCOL_VERSION
        elif case == "initialize-with-session":
            r = await h.post(initialize_body(request_id=request_id), session_id)
            status, code = 400, INVALID_REQUEST
        else:
            r = await h.post(_initialize_without("protocolVersion") | {"id": request_id})
            status, code = 400, INVALID_PARAMS
        assert_error(r, status, code, request_id=request_id)
