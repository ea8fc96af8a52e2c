"""Test your own MCP server in process: a client that talks to the ASGI app, no sockets.

Like :mod:`trio.testing`, this is for your test suite. The app runs in your
test's trio run (its session manager and sessionless service in a nursery),
so trio's mock clock drives every timeout, deadline and window::

    from trio_mcp_sessions.testing import open_test_client

    async def test_forecast(autojump_clock):
        async with open_test_client(server) as client:
            await client.initialize()
            result = await client.call_tool("forecast", {"city": "Paris"})
            assert result["content"][0]["text"] == "Sunny in Paris for 3 days"

A client speaks the session era (``initialize``, then the session's id on
every request) or, with ``protocol_version="2026-07-28"``, the sessionless
revision (``_meta`` and the routing headers on every request). Most answers
are read whole (:class:`TestResponse`); a response that stays open, such as
a session's GET stream, is read event by event (:class:`TestStream`). Below
the MCP-shaped methods, :meth:`McpTestClient.send` and
:meth:`McpTestClient.stream` send any HTTP request exactly as given (raw
header bytes, a body in chunks, any path: ``/metrics``, say).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

import trio

from ._protocol._era import MODERN_VERSIONS
from ._protocol._lifecycle import LATEST_PROTOCOL_VERSION
from ._transport._asgi import StreamableHTTPApp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, MutableMapping, Sequence

    from ._server._server import McpServer

__all__ = [
    "McpTestClient",
    "TestEvent",
    "TestResponse",
    "TestStream",
    "open_test_client",
]

#: What the tests' requests come from and go to (loopback, so the default host policy holds).
_CLIENT: Final = ("127.0.0.1", 50000)
_SERVER: Final = ("127.0.0.1", 8000)
_HOST: Final = b"127.0.0.1:8000"

#: Request headers: names to values, or raw ``(name, value)`` byte pairs sent as they are.
Headers: TypeAlias = "Mapping[str, str] | Sequence[tuple[bytes, bytes]]"
#: A request body: bytes, or chunks (an iterable or async iterable) sent one by one.
Body: TypeAlias = "bytes | Iterable[bytes] | AsyncIterable[bytes]"


@dataclass(frozen=True)
class TestEvent:
    """One server-sent event.

    Attributes:
        data: Its data lines, joined by newlines (``""`` for a priming event).
        id: Its ``id`` field: what ``Last-Event-ID`` resumes from.
        event: Its ``event`` field.
        retry: Its ``retry`` field, in milliseconds.
    """

    __test__ = False  # not a pytest test class, whatever its name

    data: str
    id: str | None = None
    event: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data as JSON (one JSON-RPC message)."""
        return json.loads(self.data)


@dataclass(frozen=True)
class TestResponse:
    """One HTTP answer, read whole.

    Attributes:
        status: The HTTP status.
        headers: The response headers, names in lower case.
        body: The raw body.
        messages: The JSON-RPC messages in it: the JSON body (each member of
            a batch's array), or each SSE event's data (comments and priming
            events without data left out).
        events: The SSE events, priming events included (empty for JSON).
    """

    __test__ = False

    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[Any] = field(default_factory=list)
    events: list[TestEvent] = field(default_factory=list)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def _event(block: bytes) -> TestEvent | None:
    """One SSE event from the lines before a blank line; ``None`` for comments only."""
    fields: dict[str, Any] = {}
    data: list[str] = []
    seen = False
    for line in block.decode().split("\n"):
        if not line or line.startswith(":"):
            continue
        seen = True
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("id", "event"):
            fields[name] = value
        elif name == "retry" and value.isascii() and value.isdigit():
            fields["retry"] = int(value)
    return TestEvent("\n".join(data), **fields) if seen else None


class _SseParser:
    """Events out of body chunks as they arrive (lines end with LF or CRLF, split or not)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[TestEvent]:
        self._buffer = (self._buffer + chunk).replace(b"\r\n", b"\n")
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        return [e for block in blocks if (e := _event(block)) is not None]

    def finish(self) -> list[TestEvent]:
        rest, self._buffer = self._buffer, b""
        last = _event(rest.rstrip(b"\r\n")) if rest.strip() else None
        return [last] if last is not None else []


def _is_sse(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").startswith("text/event-stream")


def _response(status: int, headers: dict[str, str], body: bytes) -> TestResponse:
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/json") and body:
        decoded = json.loads(body)
        return TestResponse(
            status, headers, body, decoded if isinstance(decoded, list) else [decoded]
        )
    if _is_sse(headers):
        parser = _SseParser()
        events = [*parser.feed(body), *parser.finish()]
        return TestResponse(status, headers, body, [e.json() for e in events if e.data], events)
    return TestResponse(status, headers, body)


def _raw_headers(headers: Headers | None) -> list[tuple[bytes, bytes]]:
    if headers is None:
        raw: list[tuple[bytes, bytes]] = []
    elif isinstance(headers, Mapping):
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    else:
        raw = [(bytes(k), bytes(v)) for k, v in headers]
    if not any(name.lower() == b"host" for name, _ in raw):
        raw.insert(0, (b"host", _HOST))
    return raw


class _Chunks:
    """A request body's chunks as ``http.request`` messages (no async generator to finalize).

    Bytes or an iterable: the last chunk says ``more_body: False``, as a
    server reading a Content-Length body does. An async iterable: each chunk
    as it comes, then an empty last one.
    """

    def __init__(self, body: Body) -> None:
        self._list: list[bytes] | None = None
        self._async: AsyncIterator[bytes] | None = None
        if isinstance(body, bytes | bytearray | memoryview):
            self._list = [bytes(body)]
        elif isinstance(body, AsyncIterable):
            self._async = aiter(body)
        else:
            self._list = [bytes(chunk) for chunk in body] or [b""]

    async def next(self) -> dict[str, Any] | None:
        """The next ``http.request`` message; ``None`` once the last was given."""
        if self._list is not None:
            await trio.lowlevel.checkpoint()
            if not self._list:
                return None
            chunk = self._list.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self._list)}
        if self._async is None:
            return None
        try:
            chunk = bytes(await self._async.__anext__())
        except StopAsyncIteration:
            self._async = None
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}


class _Exchange:
    """One request's ASGI ``receive`` and ``send``, checked as a server would check them.

    The client sends the body, then stays until the answer is complete or it
    :meth:`leave`\\ s, and then reports ``http.disconnect``. The answer's body
    chunks go into an unbounded channel: the test reads them as they come,
    and the answer itself bounds them.
    """

    def __init__(self, body: Body) -> None:
        self._body = _Chunks(body)
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        #: Set when the response starts or the app returns, whichever is first.
        self.answered = trio.Event()
        self.returned = trio.Event()
        self._ended = False
        self._gone = trio.Event()
        self._send_chunk, self.chunks = trio.open_memory_channel[bytes](math.inf)

    def leave(self) -> None:
        """The client goes: the app's next (or pending) ``receive()`` is a disconnect."""
        self._gone.set()

    async def receive(self) -> dict[str, Any]:
        message = await self._body.next()
        if message is not None:
            return message
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await trio.lowlevel.checkpoint()  # as a server's send() is
        kind = message["type"]
        if kind == "http.response.start":
            assert self.status is None, "the app started its response twice"
            self.status = int(message["status"])
            for name, value in message.get("headers", ()):
                key = bytes(name).decode("latin-1").lower()
                self.headers[key] = bytes(value).decode("latin-1")
            self.answered.set()
        elif kind == "http.response.body":
            assert self.status is not None, "the app sent a body before its response started"
            assert not self._ended, "the app sent a body after its response ended"
            self._send_chunk.send_nowait(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._ended = True
                self._send_chunk.close()
                self._gone.set()  # the answer is complete: the client goes
        else:
            raise AssertionError(f"the app sent an unknown ASGI message: {kind!r}")

    async def run(self, app: StreamableHTTPApp, scope: dict[str, Any]) -> None:
        """The app, called once; the answer is checked when it returns."""
        try:
            await app(scope, self.receive, self.send)
        finally:
            self._send_chunk.close()
            self._gone.set()
            self.returned.set()
            self.answered.set()
        assert self.status is not None, "the app returned without an answer"

    def body_so_far(self) -> bytes:
        """Every chunk not yet read (after the app returned: the whole body)."""
        chunks = []
        while True:
            try:
                chunks.append(self.chunks.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return b"".join(chunks)


def _scope(method: str, path: str, headers: Headers | None) -> dict[str, Any]:
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": _raw_headers(headers),
        "client": _CLIENT,
        "server": _SERVER,
    }


@final
class TestStream:
    """A response read as it arrives (see :meth:`McpTestClient.stream`).

    A non-SSE answer is read whole before the block starts; an SSE answer
    is read event by event, ``async for event in stream`` or
    :meth:`next_message`, until the server ends it or the block does (the
    client leaves: the app sees ``http.disconnect``).

    Attributes:
        status: The HTTP status.
        headers: The response headers, names in lower case.
        events: The events read so far.
    """

    __test__ = False

    def __init__(self, exchange: _Exchange) -> None:
        assert exchange.status is not None
        self.status: int = exchange.status
        self.headers: dict[str, str] = dict(exchange.headers)
        self.events: list[TestEvent] = []
        self._exchange = exchange
        self._parser = _SseParser()
        self._pending: list[TestEvent] = []
        self._body: list[bytes] = []
        self._ended = False

    async def _fill(self) -> bool:
        """Read until an event is pending; ``False`` at the end of the stream."""
        while not self._pending:
            if self._ended:
                return False
            try:
                chunk = await self._exchange.chunks.receive()
            except trio.EndOfChannel:
                self._ended = True
                self._pending.extend(self._parser.finish())
            else:
                self._body.append(chunk)
                self._pending.extend(self._parser.feed(chunk))
        return True

    def __aiter__(self) -> TestStream:
        return self

    async def __anext__(self) -> TestEvent:
        if not await self._fill():
            raise StopAsyncIteration
        event = self._pending.pop(0)
        self.events.append(event)
        return event

    async def next_message(self) -> Any:
        """The next event's JSON-RPC message (priming events skipped).

        Raises:
            AssertionError: The stream ended first.
        """
        async for event in self:
            if event.data:
                return event.json()
        raise AssertionError(f"the stream ended after {len(self.events)} events")

    async def read(self) -> TestResponse:
        """The rest of the answer, until the server ends it: the whole response."""
        async for _ in self:
            pass
        return _response(self.status, self.headers, b"".join(self._body))


@final
class McpTestClient:
    """Sends MCP requests straight to a :class:`StreamableHTTPApp` (see the module).

    More clients of one app (another user, another session) are
    ``McpTestClient(client.app, ...)``.

    Args:
        app: The app, running (:func:`open_test_client` runs it).
        protocol_version: The revision to speak; ``"2026-07-28"`` is sessionless.
        capabilities: The client capabilities it declares.
        headers: Extra request headers on every request (an ``authorization``
            your ``principal`` hook reads, say).
    """

    __test__ = False

    def __init__(
        self,
        app: StreamableHTTPApp,
        *,
        protocol_version: str = LATEST_PROTOCOL_VERSION,
        capabilities: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.protocol_version = protocol_version
        self.capabilities = dict(capabilities or {})
        self.headers = dict(headers or {})
        #: The session's id once :meth:`initialize` succeeded (session era).
        self.session_id: str | None = None
        self._next_id = 0

    @property
    def sessionless(self) -> bool:
        """Whether this client speaks a revision without sessions."""
        return self.protocol_version in MODERN_VERSIONS

    def session_headers(self) -> dict[str, str]:
        """What every request of this client carries: its extra headers, the version, the session.

        For building a request by hand (:meth:`send`) that still belongs to the session.
        """
        headers = {**self.headers, "mcp-protocol-version": self.protocol_version}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def send(
        self,
        method: str,
        body: Body = b"",
        *,
        path: str | None = None,
        headers: Headers | None = None,
    ) -> TestResponse:
        """One HTTP request exactly as given; the whole answer.

        Only a ``host`` header is added when *headers* has none: no session,
        no ``accept``, none of the client's own headers. *path* defaults to
        the app's (``/mcp``) and may carry a query string. The app runs in
        this task, so its exceptions come out as they are. An answer that
        stays open (a GET stream) is for :meth:`stream`.

        Args:
            method: The HTTP method.
            body: Bytes, or chunks sent one by one: an iterable, or an async
                iterable (which may sleep between chunks, on the mock clock).
            path: The path, with a query string if any.
            headers: Names to values (latin-1), or raw ``(name, value)``
                byte pairs sent as they are, repeats and odd bytes included.

        Raises:
            AssertionError: The app broke the ASGI protocol (a second
                response start, a body before the start, no answer at all).
        """
        exchange = _Exchange(body)
        await exchange.run(self.app, _scope(method, path or self.app.path, headers))
        assert exchange.status is not None
        return _response(exchange.status, exchange.headers, exchange.body_so_far())

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        body: Body = b"",
        *,
        path: str | None = None,
        headers: Headers | None = None,
    ) -> AsyncIterator[TestStream]:
        """Like :meth:`send`, but the answer is read as it arrives; leaving the block disconnects.

        The block starts once the response has (a non-SSE answer: once it is
        complete). The app runs in a task of its own, so what it raises comes
        out in an exception group. When the block ends before the answer did,
        the client leaves (the app's ``receive()`` says ``http.disconnect``)
        and the block waits for the app to return.
        """
        exchange = _Exchange(body)
        scope = _scope(method, path or self.app.path, headers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(exchange.run, self.app, scope)
            await exchange.answered.wait()
            if exchange.status is None:
                await exchange.returned.wait()
                return  # run() raises that there was no answer
            response = TestStream(exchange)
            if not _is_sse(response.headers):
                await exchange.returned.wait()
            try:
                yield response
            finally:
                exchange.leave()

    async def post(self, body: Any, *, headers: Mapping[str, str] | None = None) -> TestResponse:
        """POST *body* (JSON-encoded unless it is ``bytes``; a list is a batch); the whole answer.

        It carries ``accept`` and ``content-type`` as a client would, and the
        client's own :attr:`headers`; *headers* adds or overrides.
        """
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            **self.headers,
            **(headers or {}),
        }
        return await self.send("POST", data, headers=sent)

    async def delete(self) -> TestResponse:
        """DELETE the session (200, or 404 once it is gone).

        :attr:`session_id` stays, so a later request shows what a client of
        an ended session gets.
        """
        return await self.send("DELETE", headers=self.session_headers())

    @asynccontextmanager
    async def open_get_stream(self, last_event_id: str | None = None) -> AsyncIterator[TestStream]:
        """The session's GET stream (server-to-client messages); resumed after *last_event_id*.

        Read it with ``async for event in stream`` or ``await stream.next_message()``;
        leaving the block disconnects.
        """
        headers = {"accept": "text/event-stream", **self.session_headers()}
        if last_event_id is not None:
            headers["last-event-id"] = last_event_id
        async with self.stream("GET", headers=headers) as response:
            yield response

    async def initialize(self, client_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``initialize`` then ``notifications/initialized``; the server's result.

        Raises:
            AssertionError: The server did not answer 200 with a result.
        """
        if self.sessionless:
            raise RuntimeError(f"{self.protocol_version} has no initialize: just send requests")
        params = {
            "protocolVersion": self.protocol_version,
            "capabilities": self.capabilities,
            "clientInfo": dict(
                client_info or {"name": "trio-mcp-sessions test client", "version": "0"}
            ),
        }
        response = await self.post(self._request("initialize", params))
        reply = _reply_of(response, "initialize")
        self.session_id = response.headers.get("mcp-session-id")
        self.protocol_version = reply["protocolVersion"]
        done = await self.post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self.session_headers(),
        )
        assert done.status == 202, f"notifications/initialized answered {done.status}"
        result: dict[str, Any] = reply
        return result

    async def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, name: str | None = None
    ) -> TestResponse:
        """One request; its whole answer (check ``status`` and ``messages`` yourself).

        *name* is what ``Mcp-Name`` carries at 2026-07-28 (a tool's or a
        prompt's name, a resource's URI); :meth:`call_tool` sets it.
        """
        body = self._request(method, dict(params or {}))
        headers = self.session_headers()
        if self.sessionless:
            meta = body["params"].setdefault("_meta", {})
            meta.setdefault("io.modelcontextprotocol/protocolVersion", self.protocol_version)
            meta.setdefault("io.modelcontextprotocol/clientCapabilities", self.capabilities)
            headers["mcp-method"] = method
            if name is not None:
                headers["mcp-name"] = name
        return await self.post(body, headers=headers)

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        """``tools/call``; its result (an ``isError`` result is a result too).

        Raises:
            AssertionError: The server answered with an error or not 200.
        """
        response = await self.request(
            "tools/call", {"name": name, "arguments": dict(arguments or {}), **params}, name=name
        )
        result: dict[str, Any] = _reply_of(response, "tools/call")
        return result

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}


def _reply_of(response: TestResponse, method: str) -> Any:
    replies = [
        m for m in response.messages if isinstance(m, dict) and ("result" in m or "error" in m)
    ]
    assert response.status == 200, f"{method} answered {response.status}: {response.body[:500]!r}"
    assert replies, f"{method} answered no JSON-RPC reply: {response.body[:500]!r}"
    reply = replies[-1]
    assert "result" in reply, f"{method} answered an error: {reply['error']}"
    return reply["result"]


@asynccontextmanager
async def open_test_client(
    target: McpServer | StreamableHTTPApp,
    *,
    protocol_version: str = LATEST_PROTOCOL_VERSION,
    capabilities: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    **app_options: Any,
) -> AsyncIterator[McpTestClient]:
    """Run *target*'s app in this trio run and yield a client for it; stop it on the way out.

    *target* is an :class:`McpServer` (wrapped in a :class:`StreamableHTTPApp`
    built with *app_options*) or an app.
    """
    app = (
        target
        if isinstance(target, StreamableHTTPApp)
        else StreamableHTTPApp(target, **app_options)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(app.run)
        try:
            yield McpTestClient(
                app, protocol_version=protocol_version, capabilities=capabilities, headers=headers
            )
        finally:
            app.finish_drain()
            nursery.cancel_scope.cancel()
