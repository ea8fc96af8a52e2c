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
revision (``_meta`` and the routing headers on every request). Replies are
read whole, JSON or SSE; long-lived GET and listen streams are not its job.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final

import trio

from ._protocol._era import MODERN_VERSIONS
from ._protocol._lifecycle import LATEST_PROTOCOL_VERSION
from ._transport._asgi import StreamableHTTPApp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, MutableMapping

    from ._server._server import McpServer

__all__ = ["McpTestClient", "TestResponse", "open_test_client"]

#: What the tests' requests come from and go to (loopback, so the default host policy holds).
_CLIENT: Final = ("127.0.0.1", 50000)
_SERVER: Final = ("127.0.0.1", 8000)


@dataclass(frozen=True)
class TestResponse:
    """One HTTP answer, read whole.

    Attributes:
        status: The HTTP status.
        headers: The response headers, names in lower case.
        body: The raw body.
        messages: The JSON-RPC messages in it: the JSON body, or each SSE
            event's data (comments and priming events without data left out).
    """

    __test__ = False  # not a pytest test class, whatever its name

    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[Any] = field(default_factory=list)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def _messages(content_type: str, body: bytes) -> list[Any]:
    if content_type.startswith("application/json") and body:
        decoded = json.loads(body)
        return decoded if isinstance(decoded, list) else [decoded]
    if content_type.startswith("text/event-stream"):
        out: list[Any] = []
        for event in body.decode().replace("\r\n", "\n").split("\n\n"):
            data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
            if data and any(data):
                out.append(json.loads("\n".join(data)))
        return out
    return []


@final
class McpTestClient:
    """Sends MCP requests straight to a :class:`StreamableHTTPApp` (see the module).

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

    async def post(self, body: Any, *, headers: Mapping[str, str] | None = None) -> TestResponse:
        """POST *body* (JSON-encoded unless it is ``bytes``) and read the whole answer."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {
            "host": "127.0.0.1:8000",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            **self.headers,
            **(headers or {}),
        }
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.app.path,
            "raw_path": self.app.path.encode(),
            "query_string": b"",
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent.items()
            ],
            "client": _CLIENT,
            "server": _SERVER,
        }
        given = False
        finished = trio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": data, "more_body": False}
            await finished.wait()  # the client stays until the answer is complete
            return {"type": "http.disconnect"}

        status = 0
        response_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    response_headers[bytes(name).decode("latin-1").lower()] = bytes(value).decode(
                        "latin-1"
                    )
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    finished.set()

        await self.app(scope, receive, send)
        finished.set()
        raw = b"".join(chunks)
        content_type = response_headers.get("content-type", "")
        return TestResponse(status, response_headers, raw, _messages(content_type, raw))

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
            {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self._session()
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
        headers = self._session()
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

    def _session(self) -> dict[str, str]:
        headers = {"mcp-protocol-version": self.protocol_version}
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        return headers


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
