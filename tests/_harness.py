"""The one harness of the HTTP tests: a server under test, an SSE parser, request helpers.

Every test that talks to ``StreamableHTTPApp`` over real HTTP (Hypercorn on
127.0.0.1:0, see ``conftest.start_server``) builds on this module, so there is
one SSE parser, one way to start the server and one shape of an error check.
"""

from __future__ import annotations

import importlib.util
import json
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import trio

from conftest import StartServer, initialize_body
from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    Context,
    McpServer,
    Request,
    RequestInfo,
    SessionStatistics,
    StreamableHTTPApp,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import ModuleType

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

    async def priming(self) -> SseEvent:
        """The next event, which must be a priming event (an id, no data)."""
        event = await self.next()
        assert event is not None, "the stream ended before its priming event"
        assert event.is_priming, event
        return event

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


def assert_accepted(response: httpx.Response) -> None:
    """A 202 with an empty body: notifications and client responses, nothing to answer."""
    assert response.status_code == 202, (response.status_code, response.text)
    assert response.content == b""


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
        return manager_of(self.app)

    def stats(self) -> ManagerStatistics:
        return self.manager.statistics()

    def assert_nothing_allocated(self, before: ManagerStatistics) -> None:
        after = self.stats()
        assert after.created == before.created, (before, after)
        assert after.live_sessions == before.live_sessions, (before, after)

    def session_stats(self, session_id: str) -> SessionStatistics:
        """The live session's public snapshot (fails if it is not live)."""
        return live_stats(self.manager, session_id)

    def inflight(self, session_id: str) -> int:
        return self.session_stats(session_id).requests_in_flight

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
    def get_headers(
        session_id: str | None = None,
        version: str | None = LATEST,
        *,
        last_event_id: str | None = None,
    ) -> dict[str, str]:
        out = {"accept": "text/event-stream"}
        if session_id is not None:
            out["mcp-session-id"] = session_id
        if version is not None:
            out["mcp-protocol-version"] = version
        if last_event_id is not None:
            out["last-event-id"] = last_event_id
        return out

    async def get(
        self,
        session_id: str | None = None,
        version: str | None = LATEST,
        *,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A GET read to its end: for answers that are not a stream (errors)."""
        all_headers = self.get_headers(session_id, version, last_event_id=last_event_id)
        all_headers.update(headers or {})
        return await self.http.get(self.url, headers=all_headers)

    async def delete(
        self,
        session_id: str | None = None,
        version: str | None = LATEST,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = self.headers(session_id, version)
        all_headers.update(headers or {})
        return await self.http.delete(self.url, headers=all_headers)

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


# -- manager-level helpers: a session's state through the public API only ------------

LOOPBACK = RequestInfo(client_address="127.0.0.1")


def live_stats(manager: BoundedSessionManager, session_id: str) -> SessionStatistics:
    """``session_statistics()`` of a session that must be live."""
    stats = manager.session_statistics(session_id)
    assert stats is not None, f"session {session_id} is not live"
    return stats


async def set_log_level(
    manager: BoundedSessionManager,
    session_id: str,
    level: str = "debug",
    *,
    info: RequestInfo = LOOPBACK,
) -> None:
    """Send a real ``logging/setLevel`` through the manager and check its empty result."""
    request_id = f"set-level-{level}"
    stream = await manager.create_stream(
        session_id, [Request(request_id, "logging/setLevel", {"level": level})], info, "json"
    )
    try:
        replies = [json.loads(event.data) async for event in stream if event.data]
    finally:
        stream.detach()
    assert replies == [{"jsonrpc": "2.0", "id": request_id, "result": {}}], replies


class ClosedSessions:
    """An ``on_session_closed`` hook to wait on: the public signal that a session ended.

    The manager calls it at the moment the session finishes (slot freed), so
    ``await closes.wait(id)`` returns when the session's worker is done and
    gives the close reason.
    """

    def __init__(self) -> None:
        self.reasons: dict[str, CloseReason] = {}
        self._events: dict[str, trio.Event] = {}

    def _event(self, session_id: str) -> trio.Event:
        return self._events.setdefault(session_id, trio.Event())

    def __call__(self, session_id: str, reason: CloseReason) -> None:
        assert session_id not in self.reasons, f"session {session_id} closed twice"
        self.reasons[session_id] = reason
        self._event(session_id).set()

    async def wait(self, session_id: str) -> CloseReason:
        await self._event(session_id).wait()
        return self.reasons[session_id]


def manager_of(app: StreamableHTTPApp) -> BoundedSessionManager:
    manager = app.manager
    assert isinstance(manager, BoundedSessionManager)
    return manager


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    # Polling: the state lives in the client's tasks or our manager, neither offers an event.
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)


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


def initialize_without(key: str) -> dict[str, Any]:
    body = initialize_body(request_id=11)
    del body["params"][key]
    return body


def initialize_with(key: str, value: Any) -> dict[str, Any]:
    body = initialize_body(request_id=11)
    body["params"][key] = value
    return body


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: ``examples/<name>.py`` files that only re-export a module of ``trio_mcp_sessions.examples``
#: (the one copy of the code, shipped in the package).
PACKAGED_EXAMPLES = {"notes_server": "notes", "booking_server": "booking", "cart_server": "cart"}


def load_example(name: str) -> ModuleType:
    """A fresh copy of ``examples/<name>.py`` (executed again: its server and app are new).

    For a packaged example the package's module is executed again (the file in
    ``examples/`` would only re-export the one imported copy). Found, not
    imported: an imported ``trio_mcp_sessions.examples`` would become an
    attribute of the package and change ``dir(trio_mcp_sessions)``.
    """
    path = EXAMPLES / f"{name}.py"
    if name in PACKAGED_EXAMPLES:
        package = importlib.util.find_spec("trio_mcp_sessions.examples")
        assert package is not None
        assert package.submodule_search_locations
        path = Path(package.submodule_search_locations[0]) / f"{PACKAGED_EXAMPLES[name]}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
