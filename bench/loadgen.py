"""A load generator that speaks plain MCP Streamable HTTP (HTTP/1.1, keep-alive) to 127.0.0.1.

Any Streamable HTTP server URL on 127.0.0.1 works: it sends ``initialize``,
``notifications/initialized``, ``tools/call`` and ``DELETE`` as a client
would (or 2026-07-28 ``tools/call`` requests with no session at all), reads
JSON or SSE replies (the JSON-RPC response is taken from the SSE events),
and records every request's latency. Every workload is bounded both
in requests and in seconds.

The HTTP client is a small hand-written HTTP/1.1 client on trio sockets
(``Content-Length`` and chunked bodies), because the client must not be the
bottleneck: on the 2-core benchmark machine it spends about 0.09 ms of CPU
per ``tools/call`` against the raw ASGI server, which then runs at 100% of
its core, while ``httpx`` (0.28, on trio) spent 0.67 ms per request and
topped out at about 1,470 requests/s with the same server at 72%. The runner
reports client and server CPU side by side for every measurement.

Used by ``bench/run.py``; on its own::

    python bench/loadgen.py http://127.0.0.1:8000/mcp churn --concurrency 8 --seconds 15
    python bench/loadgen.py http://127.0.0.1:8000/mcp calls --concurrency 8 --seconds 10
    python bench/loadgen.py http://127.0.0.1:8000/mcp stateless --reply sse --seconds 10
    python bench/loadgen.py http://127.0.0.1:8000/mcp flood --rate 500 --seconds 10
    python bench/loadgen.py http://127.0.0.1:8000/mcp modern-flood --concurrency 64 --seconds 10

Client identities: a workload can bind its sockets to another loopback source
address (``127.0.0.2`` ...), which is how the flood looks like one client to a
server that keys its rate limits on the peer address. The 2026-07-28 flood
(``modern-flood``, ``keyed_calls``) names its clients in an ``X-Bench-Client``
header instead, which bench/servers/keyed.py takes as the principal.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

PROTOCOL_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "trio-mcp-bench", "version": "1.0"}
TOOL = "echo"
TOOL_ARGUMENTS = {"text": "hello"}
#: The sessionless revision: every request carries its version and capabilities.
MODERN_VERSION = "2026-07-28"
#: The tool a 2026-07-28 SSE reply comes from: it reports progress before answering.
PROGRESS_TOOL = "progress_echo"
#: A tool that waits *ms* milliseconds before answering (bench/servers/ours.py, sdk_server.py).
PAUSE_TOOL = "pause"
#: The header a client names itself in, for a server that keys its budgets on
#: it (bench/servers/keyed.py): every benchmark client is on 127.0.0.1.
CLIENT_HEADER = "X-Bench-Client"


class ProtocolFailure(Exception):
    """The server answered something a well-formed MCP exchange does not produce."""

    def __init__(self, kind: str, status: int, detail: str = "") -> None:
        super().__init__(f"{kind}: HTTP {status} {detail}".strip())
        self.kind = kind
        self.status = status


class _ConnectionLost(Exception):
    def __init__(self, fresh: bool) -> None:
        super().__init__("connection closed by the server")
        self.fresh = fresh  # nothing of the response had arrived


# -- target ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"the load generator talks to http://127.0.0.1:PORT only, not {url!r}")
        return cls(parts.hostname, parts.port, parts.path or "/mcp")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


def check_source(source: str | None) -> None:
    if source is not None and not source.startswith("127."):
        raise ValueError(f"client source addresses must be loopback, not {source!r}")


# -- HTTP/1.1 --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection (reconnects when the server closed it while idle)."""

    def __init__(self, target: Target, source: str | None = None) -> None:
        check_source(source)
        self.target = target
        self.source = source
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()
        self.used = False

    async def connect(self) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        try:
            if self.source is not None:
                await sock.bind((self.source, 0))
            await sock.connect((self.target.host, self.target.port))
        except BaseException:
            sock.close()
            raise
        self.stream = trio.SocketStream(sock)  # sets TCP_NODELAY
        self.buf.clear()
        self.used = False

    async def aclose(self) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def request(self, raw: bytes) -> Response:
        """Send a complete request and read the complete response."""
        for attempt in range(2):
            if self.stream is None:
                await self.connect()
            reused = self.used
            try:
                await self._send(raw)
                status, headers = await self._read_head()
                body = await self._read_body(headers)
            except _ConnectionLost as exc:
                await self.aclose()
                # An idle keep-alive connection the server closed: the request
                # never reached it, so sending it again is safe (once).
                if attempt == 0 and reused and exc.fresh:
                    continue
                raise
            self.used = True
            if headers.get("connection", "").lower() == "close":
                await self.aclose()
            return Response(status, headers, body)
        raise AssertionError("unreachable")

    async def open_stream(self, raw: bytes) -> Response:
        """Send a request and read only the response head (for a GET stream held open)."""
        if self.stream is None:
            await self.connect()
        await self._send(raw)
        status, headers = await self._read_head()
        return Response(status, headers, b"")

    async def _send(self, raw: bytes) -> None:
        assert self.stream is not None
        try:
            await self.stream.send_all(raw)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _ConnectionLost(fresh=True) from None

    async def _fill(self) -> None:
        assert self.stream is not None
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            raise _ConnectionLost(fresh=not self.buf)
        self.buf += data

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            await self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def _read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return line
            await self._fill()

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        length = headers.get("content-length")
        if length is not None:
            return await self._read_exactly(int(length))
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int((await self._read_line()).split(b";", 1)[0], 16)
                if size == 0:
                    while await self._read_line():  # trailers, then the empty line
                        pass
                    return b"".join(chunks)
                chunks.append(await self._read_exactly(size))
                await self._read_exactly(2)
        # No length, not chunked: the body ends with the connection.
        chunks = [bytes(self.buf)]
        self.buf.clear()
        while True:
            try:
                await self._fill()
            except _ConnectionLost:
                break
            chunks.append(bytes(self.buf))
            self.buf.clear()
        await self.aclose()
        return b"".join(chunks)


# -- MCP over HTTP ---------------------------------------------------------------------


@dataclass
class Session:
    session_id: str
    version: str


class McpHttp:
    """Builds MCP Streamable HTTP requests for one endpoint and reads their answers."""

    def __init__(self, target: Target, headers: dict[str, str] | None = None) -> None:
        self.target = target
        self._ids = itertools.count(1)
        # *headers* go on every POST: e.g. the client identity a benchmark
        # server keys its budgets on (bench/servers/keyed.py).
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._prefix = (
            f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
            f"{extra}"
        ).encode("latin-1")

    def post(self, message: dict[str, Any], session: Session | None = None) -> bytes:
        body = json.dumps(message, separators=(",", ":")).encode()
        extra = ""
        if session is not None:
            extra = (
                f"Mcp-Session-Id: {session.session_id}\r\n"
                f"MCP-Protocol-Version: {session.version}\r\n"
            )
        return self._prefix + f"{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body

    def delete(self, session: Session) -> bytes:
        return (
            f"DELETE {self.target.path} HTTP/1.1\r\nHost: {self.target.host}:{self.target.port}\r\n"
            f"Mcp-Session-Id: {session.session_id}\r\nMCP-Protocol-Version: {session.version}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode("latin-1")

    def get_stream(self, session: Session) -> bytes:
        return (
            f"GET {self.target.path} HTTP/1.1\r\nHost: {self.target.host}:{self.target.port}\r\n"
            f"Accept: text/event-stream\r\nMcp-Session-Id: {session.session_id}\r\n"
            f"MCP-Protocol-Version: {session.version}\r\n\r\n"
        ).encode("latin-1")

    def initialize_request(self) -> tuple[int, bytes]:
        request_id = next(self._ids)
        message = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            },
        }
        return request_id, self.post(message)

    def initialized_request(self, session: Session) -> bytes:
        return self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)

    def stateless_call_request(
        self, tool: str, progress: bool, arguments: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        """A 2026-07-28 ``tools/call``: no session, version and capabilities in ``_meta``."""
        request_id = next(self._ids)
        meta: dict[str, Any] = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        if progress:
            meta["progressToken"] = request_id
        message = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": TOOL_ARGUMENTS if arguments is None else arguments,
                "_meta": meta,
            },
        }
        body = json.dumps(message, separators=(",", ":")).encode()
        head = (
            f"MCP-Protocol-Version: {MODERN_VERSION}\r\nMcp-Method: tools/call\r\n"
            f"Mcp-Name: {tool}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return request_id, self._prefix + head.encode("latin-1") + body

    def tool_call_request(self, session: Session) -> tuple[int, bytes]:
        request_id = next(self._ids)
        message = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": TOOL, "arguments": TOOL_ARGUMENTS},
        }
        return request_id, self.post(message, session)


def json_rpc_reply(kind: str, response: Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response to *request_id*, from a JSON body or from SSE events."""
    if response.status != 200:
        raise ProtocolFailure(kind, response.status, response.body[:200].decode("latin-1"))
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for event in response.body.replace(b"\r\n", b"\n").split(b"\n\n"):
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
            )
            if not data:
                continue  # a priming event or a comment
            message = json.loads(data)
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return _checked(kind, response, message)
        raise ProtocolFailure(kind, response.status, "no response in the SSE stream")
    return _checked(kind, response, json.loads(response.body))


def _checked(kind: str, response: Response, message: dict[str, Any]) -> dict[str, Any]:
    if "error" in message:
        raise ProtocolFailure(kind, response.status, json.dumps(message["error"]))
    return message


class Recorder:
    """Latencies (seconds) per request kind, and failures per kind and status."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.failures: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, ProtocolFailure):
            self.failures[f"{exc.kind}:{exc.status}"] += 1
        else:
            self.failures[type(exc).__name__] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "latency_ms": {kind: percentiles(values) for kind, values in self.latencies.items()},
            "failures": dict(self.failures),
            "statuses": dict(self.statuses),
        }


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds (nearest-rank percentiles)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * n) - 1)] * 1000, 3)

    return {
        "n": n,
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / n * 1000, 3),
    }


async def initialize(mcp: McpHttp, conn: Connection, rec: Recorder | None = None) -> Session:
    """``initialize`` then ``notifications/initialized``: an open session."""
    request_id, raw = mcp.initialize_request()
    start = time.perf_counter()
    response = await conn.request(raw)
    reply = json_rpc_reply("initialize", response, request_id)
    session_id = response.headers.get("mcp-session-id")
    if not session_id:
        raise ProtocolFailure("initialize", response.status, "no Mcp-Session-Id")
    session = Session(session_id, reply["result"]["protocolVersion"])
    middle = time.perf_counter()
    response = await conn.request(mcp.initialized_request(session))
    if response.status != 202:
        raise ProtocolFailure("initialized", response.status)
    if rec is not None:
        end = time.perf_counter()
        rec.add("initialize", middle - start)
        rec.add("initialized", end - middle)
    return session


async def call_tool(mcp: McpHttp, conn: Connection, session: Session) -> dict[str, Any]:
    request_id, raw = mcp.tool_call_request(session)
    reply = json_rpc_reply("tools/call", await conn.request(raw), request_id)
    if reply["result"].get("isError"):
        raise ProtocolFailure("tools/call", 200, "isError")
    return reply


async def call_tool_stateless(
    mcp: McpHttp,
    conn: Connection,
    reply: str,
    *,
    tool: str | None = None,
    arguments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One 2026-07-28 ``tools/call``; *reply* ``"json"`` or ``"sse"`` is the answer expected.

    ``"sse"`` calls the tool that reports progress (with a ``progressToken``),
    so the answer must be an SSE stream carrying the progress and the result.
    *tool* and *arguments* name another tool (answered as JSON, no progress).
    """
    sse = reply == "sse"
    if tool is None:
        tool = PROGRESS_TOOL if sse else TOOL
    request_id, raw = mcp.stateless_call_request(tool, progress=sse, arguments=arguments)
    response = await conn.request(raw)
    answer = json_rpc_reply("tools/call", response, request_id)
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream") != sse:
        detail = f"{reply} expected, got {content_type}"
        raise ProtocolFailure("tools/call", response.status, detail)
    if sse and b"notifications/progress" not in response.body:
        raise ProtocolFailure("tools/call", response.status, "no progress in the SSE stream")
    result = answer["result"]
    if result.get("resultType") != "complete" or result.get("isError"):
        raise ProtocolFailure("tools/call", response.status, "not a complete result")
    return answer


async def delete(mcp: McpHttp, conn: Connection, session: Session) -> None:
    response = await conn.request(mcp.delete(session))
    if response.status not in (200, 204):
        raise ProtocolFailure("delete", response.status)


# -- workloads ---------------------------------------------------------------------------


@dataclass
class Budget:
    """At most *count* operations and at most *seconds*, shared by the workers."""

    count: int
    seconds: float
    started: int = 0
    done: int = 0
    deadline: float = field(default=0.0)

    def start(self) -> None:
        self.deadline = trio.current_time() + self.seconds

    def take(self) -> bool:
        if self.started >= self.count or trio.current_time() >= self.deadline:
            return False
        self.started += 1
        return True


async def churn(target: Target, *, concurrency: int, count: int, seconds: float) -> dict[str, Any]:
    """Whole sessions: initialize, initialized, tools/call, DELETE; *concurrency* at a time."""
    mcp = McpHttp(target)
    rec = Recorder()
    budget = Budget(count, seconds)

    async def worker() -> None:
        conn = Connection(target)
        try:
            while budget.take():
                start = time.perf_counter()
                try:
                    session = await initialize(mcp, conn, rec)
                    t1 = time.perf_counter()
                    await call_tool(mcp, conn, session)
                    t2 = time.perf_counter()
                    await delete(mcp, conn, session)
                except (ProtocolFailure, _ConnectionLost, OSError) as exc:
                    rec.fail(exc)
                    await conn.aclose()
                    continue
                end = time.perf_counter()
                rec.add("tools/call", t2 - t1)
                rec.add("delete", end - t2)
                rec.add("session", end - start)
                budget.done += 1
        finally:
            await conn.aclose()

    elapsed = await run_workers(budget, worker, concurrency)
    return {
        "sessions": budget.done,
        "seconds": round(elapsed, 3),
        "sessions_per_s": round(budget.done / elapsed, 2),
        **rec.summary(),
    }


async def run_workers(
    budget: Budget,
    worker: Callable[..., Awaitable[None]],
    concurrency: int,
    *,
    with_index: bool = False,
) -> float:
    """Start *budget*, run *concurrency* workers until they stop, return the seconds it took."""
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        budget.start()
        for index in range(concurrency):
            if with_index:
                nursery.start_soon(worker, index)
            else:
                nursery.start_soon(worker)
    return time.perf_counter() - started


async def open_sessions(
    target: Target,
    n: int,
    *,
    concurrency: int = 32,
    seconds: float = 600,
    source: str | None = None,
    rec: Recorder | None = None,
) -> list[Session]:
    """Open up to *n* sessions (initialize + initialized), within *seconds*."""
    mcp = McpHttp(target)
    sessions: list[Session] = []
    budget = Budget(n, seconds)
    failures = Recorder() if rec is None else rec

    async def worker() -> None:
        conn = Connection(target, source)
        try:
            while budget.take():
                try:
                    sessions.append(await initialize(mcp, conn))
                except (ProtocolFailure, _ConnectionLost, OSError) as exc:
                    failures.fail(exc)
                    await conn.aclose()
                    if sum(failures.failures.values()) > max(100, n // 10):
                        raise RuntimeError(f"too many failures: {dict(failures.failures)}") from exc
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        budget.start()
        for _ in range(min(concurrency, n)):
            nursery.start_soon(worker)
    return sessions


async def close_sessions(
    target: Target, sessions: list[Session], *, concurrency: int = 16, seconds: float = 120
) -> int:
    """DELETE these sessions; returns how many were deleted."""
    mcp = McpHttp(target)
    pending = iter(list(sessions))
    deleted = 0

    async def worker() -> None:
        nonlocal deleted
        conn = Connection(target)
        try:
            for session in pending:
                try:
                    await delete(mcp, conn, session)
                    deleted += 1
                except (ProtocolFailure, _ConnectionLost, OSError):
                    await conn.aclose()
        finally:
            await conn.aclose()

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return deleted


async def tool_calls(
    target: Target,
    sessions: list[Session],
    *,
    concurrency: int,
    count: int,
    seconds: float,
    rate_per_worker: float | None = None,
    sources: list[str | None] | None = None,
    pick: str = "round_robin",
    kind: str = "tools/call",
) -> dict[str, Any]:
    """``tools/call`` on already-open sessions, *concurrency* connections at a time.

    Closed loop by default (each worker sends its next request when the last
    one is answered). With *rate_per_worker*, each worker sends on a fixed
    schedule instead, and latency is measured from the scheduled send time, so
    a server that falls behind is charged for the queueing it causes
    (no coordinated omission). ``pick="random"`` spreads calls over all
    *sessions* at random.
    """
    mcp = McpHttp(target)
    rec = Recorder()
    budget = Budget(count, seconds)
    rng = random.Random(1)

    async def worker(index: int) -> None:
        conn = Connection(target, sources[index % len(sources)] if sources else None)
        mine = sessions[index::concurrency] or sessions
        next_send = trio.current_time() + (
            rng.random() / rate_per_worker if rate_per_worker else 0.0
        )
        try:
            for turn in itertools.count():
                if rate_per_worker:
                    if next_send >= budget.deadline:
                        break
                    await trio.sleep_until(next_send)
                if not budget.take():
                    break
                session = rng.choice(sessions) if pick == "random" else mine[turn % len(mine)]
                # perf_counter and trio's clock tick at the same rate: measure
                # from the scheduled time when sending on a schedule.
                lag = max(0.0, trio.current_time() - next_send) if rate_per_worker else 0.0
                start = time.perf_counter() - lag
                try:
                    await call_tool(mcp, conn, session)
                except (ProtocolFailure, _ConnectionLost, OSError) as exc:
                    rec.fail(exc)
                    await conn.aclose()
                    continue
                rec.add(kind, time.perf_counter() - start)
                budget.done += 1
                if rate_per_worker:
                    next_send += 1.0 / rate_per_worker
        finally:
            await conn.aclose()

    elapsed = await run_workers(budget, worker, concurrency, with_index=True)
    return {
        "requests": budget.done,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(budget.done / elapsed, 2),
        **rec.summary(),
    }


async def stateless_calls(
    target: Target,
    *,
    concurrency: int,
    count: int,
    seconds: float,
    reply: str = "json",
    kind: str = "tools/call",
) -> dict[str, Any]:
    """2026-07-28 ``tools/call`` with no session, *concurrency* connections, closed loop.

    Each request stands alone (version and client capabilities in ``_meta``,
    the routing headers beside them); each answer is checked: a complete
    result, as JSON for ``reply="json"`` (the plain echo tool) or as an SSE
    stream with a progress notification for ``reply="sse"``.
    """
    if reply not in ("json", "sse"):
        raise ValueError(f"reply must be json or sse, not {reply!r}")
    mcp = McpHttp(target)
    rec = Recorder()
    budget = Budget(count, seconds)

    async def worker() -> None:
        conn = Connection(target)
        try:
            while budget.take():
                start = time.perf_counter()
                try:
                    await call_tool_stateless(mcp, conn, reply)
                except (ProtocolFailure, _ConnectionLost, OSError, ValueError) as exc:
                    rec.fail(exc)
                    await conn.aclose()
                    continue
                rec.add(kind, time.perf_counter() - start)
                budget.done += 1
        finally:
            await conn.aclose()

    elapsed = await run_workers(budget, worker, concurrency)
    return {
        "requests": budget.done,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(budget.done / elapsed, 2),
        **rec.summary(),
    }


async def keyed_calls(
    target: Target,
    *,
    clients: int,
    count: int,
    seconds: float,
    tool: str = PAUSE_TOOL,
    arguments: dict[str, Any] | None = None,
    think: float = 0.0,
    prefix: str = "good",
    kind: str = "tools/call",
) -> dict[str, Any]:
    """2026-07-28 ``tools/call`` from *clients* well-behaved clients, closed loop.

    Client *i* has its own keep-alive connection and names itself
    ``{prefix}-{i}`` in the ``X-Bench-Client`` header (the key
    bench/servers/keyed.py budgets on); it sends its next call *think*
    seconds after the last one was answered. Every answer is checked (a
    complete JSON result); anything else counts as a failure, by status
    (``tools/call:429``) or, for a connection error, by exception type.
    """
    rec = Recorder()
    budget = Budget(count, seconds)

    async def worker(index: int) -> None:
        mcp = McpHttp(target, {CLIENT_HEADER: f"{prefix}-{index}"})
        conn = Connection(target)
        try:
            while budget.take():
                start = time.perf_counter()
                try:
                    await call_tool_stateless(mcp, conn, "json", tool=tool, arguments=arguments)
                except (ProtocolFailure, _ConnectionLost, OSError, ValueError) as exc:
                    rec.fail(exc)
                    await conn.aclose()
                else:
                    rec.add(kind, time.perf_counter() - start)
                    budget.done += 1
                if think:
                    await trio.sleep(think)
        finally:
            await conn.aclose()

    elapsed = await run_workers(budget, worker, clients, with_index=True)
    return {
        "requests": budget.done,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(budget.done / elapsed, 2),
        **rec.summary(),
    }


async def modern_flood(
    target: Target,
    *,
    connections: int,
    seconds: float,
    count: int = 10**8,
    client: str = "flood",
    tool: str = PAUSE_TOOL,
    arguments: dict[str, Any] | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """One client sending 2026-07-28 ``tools/call`` as fast as it can on *connections* at once.

    Every connection sends its next call as soon as the last is answered,
    whatever the answer (``Retry-After`` ignored, as an abusive client
    would); with *rate*, the connections together send at most *rate* calls
    per second instead, each on its own schedule (one that falls behind
    sends at once and does not catch up). All of them carry
    ``X-Bench-Client: {client}``, so a server that keys its budget on that
    header sees one client. Answers are counted by
    status, their latencies kept per status; every 429 is checked for a
    ``Retry-After`` and a JSON-RPC error body (the misses are counted);
    connection errors are counted by exception type.
    """
    mcp = McpHttp(target, {CLIENT_HEADER: client})
    statuses: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    malformed_429 = 0
    budget = Budget(count, seconds)

    gap = connections / rate if rate else 0.0

    async def worker(index: int) -> None:
        nonlocal malformed_429
        conn = Connection(target)
        next_send = trio.current_time() + index / rate if rate else 0.0
        try:
            while True:
                if rate:
                    if next_send >= budget.deadline:
                        break
                    await trio.sleep_until(next_send)
                    next_send = max(next_send + gap, trio.current_time())
                if not budget.take():
                    break
                _request_id, raw = mcp.stateless_call_request(tool, False, arguments)
                start = time.perf_counter()
                try:
                    response = await conn.request(raw)
                except (_ConnectionLost, OSError) as exc:
                    statuses[type(exc).__name__] += 1
                    await conn.aclose()
                    continue
                status = str(response.status)
                statuses[status] += 1
                latencies.setdefault(status, []).append(time.perf_counter() - start)
                if response.status == 429 and (
                    "retry-after" not in response.headers or b'"error"' not in response.body
                ):
                    malformed_429 += 1
                budget.done += 1
        finally:
            await conn.aclose()

    cpu = time.process_time()
    elapsed = await run_workers(budget, worker, connections, with_index=True)
    return {
        "connections": connections,
        "offered_per_s": rate,
        "sent": budget.done,
        "seconds": round(elapsed, 3),
        "sent_per_s": round(budget.done / elapsed, 1),
        "statuses": dict(statuses),
        "latency_ms": {status: percentiles(values) for status, values in latencies.items()},
        "malformed_429": malformed_429,
        "client_cpu_s": round(time.process_time() - cpu, 3),
    }


async def hold_get_streams(
    target: Target,
    sessions: list[Session],
    *,
    concurrency: int = 16,
    seconds: float = 120,
) -> list[Connection]:
    """Open one standalone GET SSE stream per session and keep them open (one connection each)."""
    mcp = McpHttp(target)
    held: list[Connection] = []
    pending = iter(list(sessions))
    failures: Counter[int] = Counter()

    async def worker() -> None:
        for session in pending:
            conn = Connection(target)
            response = await conn.open_stream(mcp.get_stream(session))
            if response.status != 200:
                failures[response.status] += 1
                await conn.aclose()
                continue
            held.append(conn)

    with trio.fail_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    if failures:
        raise RuntimeError(f"GET streams refused: {dict(failures)}")
    return held


async def flood(
    target: Target,
    *,
    rate: float,
    seconds: float,
    source: str | None = "127.0.0.2",
    max_connections: int = 128,
) -> dict[str, Any]:
    """``initialize`` at a steady *rate* per second from one client address (open loop).

    Requests go out on schedule whatever the answers; the flood keeps up to
    *max_connections* keep-alive connections. A send that finds every
    connection busy is skipped and counted (the server is not keeping up).
    Successful sessions are abandoned, as an abusive client would.
    """
    check_source(source)
    mcp = McpHttp(target)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    idle: list[Connection] = []
    opened = 0
    skipped = 0
    sent = 0

    async def send_one(conn: Connection) -> None:
        _request_id, raw = mcp.initialize_request()
        start = time.perf_counter()
        try:
            response = await conn.request(raw)
            statuses[str(response.status)] += 1
            latencies.append(time.perf_counter() - start)
        except (_ConnectionLost, OSError) as exc:
            statuses[type(exc).__name__] += 1
            await conn.aclose()
        idle.append(conn)

    total = int(rate * seconds)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        for k in range(total):
            await trio.sleep_until(t0 + k / rate)
            if idle:
                conn = idle.pop()
            elif opened < max_connections:
                conn = Connection(target, source)
                opened += 1
            else:
                skipped += 1
                continue
            sent += 1
            nursery.start_soon(send_one, conn)
        # Stragglers get at most a second after the flood window.
        nursery.cancel_scope.deadline = trio.current_time() + 1.0
    for conn in idle:
        await conn.aclose()
    elapsed = time.perf_counter() - started
    return {
        "offered_per_s": rate,
        "sent": sent,
        "sent_per_s": round(sent / elapsed, 1),
        "skipped_all_connections_busy": skipped,
        "connections": opened,
        "statuses": dict(statuses),
        "latency_ms": percentiles(latencies),
    }


# -- command line ------------------------------------------------------------------------


async def _cli(args: argparse.Namespace) -> dict[str, Any]:
    target = Target.from_url(args.url)
    if args.workload == "churn":
        return await churn(
            target, concurrency=args.concurrency, count=args.count, seconds=args.seconds
        )
    if args.workload == "stateless":
        return await stateless_calls(
            target,
            concurrency=args.concurrency,
            count=args.count,
            seconds=args.seconds,
            reply=args.reply,
        )
    if args.workload == "calls":
        sessions = await open_sessions(target, args.concurrency)
        try:
            return await tool_calls(
                target,
                sessions,
                concurrency=args.concurrency,
                count=args.count,
                seconds=args.seconds,
            )
        finally:
            await close_sessions(target, sessions)
    if args.workload == "modern-flood":
        # bench/run.py starts this in its own process (so the flood's client
        # CPU is not the well-behaved clients') and starts measuring on this line.
        print("FLOODING", flush=True)
        return await modern_flood(
            target,
            connections=args.concurrency,
            seconds=args.seconds,
            count=args.count,
            client=args.client,
            arguments={"ms": args.pause_ms, "cpu_ms": args.cpu_ms},
            rate=args.rate,
        )
    return await flood(target, rate=args.rate or 500.0, seconds=args.seconds, source=args.source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://127.0.0.1:PORT/mcp")
    parser.add_argument(
        "workload", choices=("churn", "calls", "stateless", "flood", "modern-flood")
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--count", type=int, default=100_000, help="at most this many")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="flood: initialize/s (500); modern-flood: calls/s (default: as fast as it can)",
    )
    parser.add_argument("--source", default="127.0.0.2", help="flood: client source address")
    parser.add_argument(
        "--reply", choices=("json", "sse"), default="json", help="stateless: the answer expected"
    )
    parser.add_argument("--client", default="flood", help=f"modern-flood: the {CLIENT_HEADER}")
    parser.add_argument(
        "--pause-ms", type=float, default=5.0, help="modern-flood: the pause tool's milliseconds"
    )
    parser.add_argument(
        "--cpu-ms", type=float, default=0.0, help="modern-flood: the pause tool's CPU first (ms)"
    )
    args = parser.parse_args()
    cpu = time.process_time()
    result = trio.run(_cli, args)
    result["client_cpu_s"] = round(time.process_time() - cpu, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
