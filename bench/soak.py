"""The soak: churned sessions plus a hostile mix against a real server, its RSS sampled over time.

It starts ``bench/servers/soak_server.py`` (trio-mcp-sessions served by our
command line on Hypercorn's trio worker, on 127.0.0.1, with metrics on) with
``bench/run.py``'s launcher, and for as long as it takes to churn
``--sessions`` whole sessions (initialize, initialized, tools/call, DELETE; at
most ``--duration`` seconds) it runs, side by side:

- the churn: sessions started at a steady ``--churn-rate`` over
  ``--concurrency`` keep-alive connections (``bench/loadgen.py``'s client);
- the hostile mix at a modest ``--hostile-rate`` (at most
  ``--hostile-concurrency`` at once, ``--hostile-count`` in all): probes from a
  fixed rotation, each bounded in time, every answer counted by status (see
  ``Probes`` below: huge integers, lone surrogates, odd Unicode digits in
  Host/Origin/Last-Event-ID, deep nesting, oversized bodies, 2025-03-26
  batches of more than 64 requests, odd DELETEs, readers that stop reading
  large SSE replies, GET streams held open, long ``resources/subscribe`` URIs,
  sampling requests left pending); what it holds (sockets, sessions) is
  capped per kind and released, oldest first, as new ones come, and all of it
  at the end;
- a sampler: the server's RSS (``/proc/<pid>/status``) and live sessions (its
  ``/metrics``) every ``--sample-interval`` seconds.

Then it releases everything it holds, samples a few seconds more, stops the
server by PID (SIGTERM, SIGKILL after 15 s) and writes ``soak.json``,
``soak.md``, ``samples.csv``, ``soak.png`` and the server log into
``bench/results/soak-<timestamp>/``; a full run also writes the plot to
``docs/bench-soak.png``. A server that answers 500 or drops connections is
counted, never fatal; a server that dies ends the run early (and says so).

    .venv/bin/python bench/soak.py                 # 20,000 sessions, about 3.5 minutes
    .venv/bin/python bench/soak.py --quick         # 2,000 sessions, under 30 s
    .venv/bin/python bench/soak.py --sessions 5000 --duration 120 --sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import itertools
import json
import re
import socket
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import run as bench_run  # noqa: E402
from loadgen import Connection, McpHttp, Response, Session, Target  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

DOCS_PNG = ROOT / "docs" / "bench-soak.png"
OLD_VERSION = "2025-03-26"  # the one protocol version with JSON-RPC batches
PROBE_TIMEOUT = 15.0  # seconds one probe may take, all its requests together
REQUEST_TIMEOUT = 10.0  # seconds one request may take
RELEASE_TIMEOUT = 5.0
# Anything a request can fail with on the client side: counted, never raised.
CONNECTION_ERRORS = (
    loadgen._ConnectionLost,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


# -- counting ------------------------------------------------------------------------


class Tally:
    """Every answer by (kind, status); errors as ``conn-error``, ``timeout`` or ``client-error``."""

    def __init__(self) -> None:
        self.answers: Counter[tuple[str, str]] = Counter()
        self.rpc_errors: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()

    def status(self, kind: str, status: int) -> None:
        self.answers[(kind, str(status))] += 1

    def error(self, kind: str, exc: BaseException) -> None:
        if isinstance(exc, CONNECTION_ERRORS):
            self.answers[(kind, "conn-error")] += 1
        else:  # a reply the client could not parse, for instance
            self.answers[(kind, f"client-error:{type(exc).__name__}")] += 1

    def timeout(self, kind: str) -> None:
        self.answers[(kind, "timeout")] += 1

    def by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (kind, status), n in sorted(self.answers.items()):
            out.setdefault(kind, {})[status] = n
        return out

    def totals(self) -> dict[str, int]:
        classes: Counter[str] = Counter()
        for (_kind, status), n in self.answers.items():
            if status.isdigit():
                classes[f"{status[0]}xx"] += n
            else:
                classes[status.split(":")[0]] += n
        classes["answers"] = sum(self.answers.values())
        return dict(sorted(classes.items()))

    def five_xx(self) -> dict[str, int]:
        return {
            f"{kind} {status}": n
            for (kind, status), n in sorted(self.answers.items())
            if status.startswith("5")
        }


# -- requests ------------------------------------------------------------------------


def raw_request(
    target: Target,
    method: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    path: str | None = None,
) -> bytes:
    """An HTTP/1.1 request with any header values.

    The head is Latin-1 (HTTP's obs-text, which is how servers decode it, so
    ``\u00b2`` arrives as the superscript digit); characters beyond Latin-1 go
    as UTF-8.
    """
    fields = {"Host": f"{target.host}:{target.port}", **(headers or {})}
    if body or method == "POST":
        fields["Content-Length"] = str(len(body))
    head = f"{method} {path or target.path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in fields.items()
    )
    try:
        raw_head = (head + "\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raw_head = (head + "\r\n").encode("utf-8", "surrogatepass")
    return raw_head + body


def post_headers(session: Session | None = None) -> dict[str, str]:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    if session is not None:
        headers["Mcp-Session-Id"] = session.session_id
        headers["MCP-Protocol-Version"] = session.version
    return headers


def dumps(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def messages_in(response: Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a reply: a JSON body (one or a batch) or SSE events."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        found: list[dict[str, Any]] = []
        for event in response.body.replace(b"\r\n", b"\n").split(b"\n\n"):
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
            )
            if data:
                found += messages_of(json.loads(data))
        return found
    if not response.body:
        return []
    return messages_of(json.loads(response.body))


def messages_of(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [m for m in items if isinstance(m, dict)]


class SlowReader(Connection):
    """A connection with a tiny receive buffer: a reply it does not read stays with the server."""

    async def connect(self) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect((self.target.host, self.target.port))
        except BaseException:
            sock.close()
            raise
        self.stream = trio.SocketStream(sock)
        self.buf.clear()
        self.used = False


class Client:
    """Sends requests and counts every answer; a failure is counted and reported as ``None``."""

    def __init__(self, target: Target, tally: Tally) -> None:
        self.target = target
        self.tally = tally
        self.mcp = McpHttp(target)
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    async def send(
        self, kind: str, conn: Connection, raw: bytes, *, head_only: bool = False
    ) -> Response | None:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT) as scope:
                if head_only:
                    response = await conn.open_stream(raw)
                else:
                    response = await conn.request(raw)
        except Exception as exc:  # counted: the soak must survive any server behaviour
            self.tally.error(kind, exc)
            await conn.aclose()
            return None
        if scope.cancelled_caught:
            self.tally.timeout(kind)
            await conn.aclose()
            return None
        self.tally.status(kind, response.status)
        return response

    async def send_while_reading(self, kind: str, conn: Connection, raw: bytes) -> None:
        """Send *raw* while reading the answer, for a server that answers before the body ends."""
        try:
            with trio.move_on_after(REQUEST_TIMEOUT) as scope:
                if conn.stream is None:
                    await conn.connect()
                assert conn.stream is not None
                stream = conn.stream
                async with trio.open_nursery() as nursery:

                    async def sender() -> None:
                        with contextlib.suppress(*CONNECTION_ERRORS):
                            await stream.send_all(raw)

                    nursery.start_soon(sender)
                    status, _headers = await conn._read_head()
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            self.tally.error(kind, exc)
            return
        finally:
            await conn.aclose()
        if scope.cancelled_caught:
            self.tally.timeout(kind)
        else:
            self.tally.status(kind, status)

    async def open_session(
        self,
        kind: str,
        conn: Connection,
        *,
        version: str = loadgen.PROTOCOL_VERSION,
        capabilities: dict[str, Any] | None = None,
    ) -> Session | None:
        """initialize + notifications/initialized, counted under ``kind:initialize`` ..."""
        message = {
            "jsonrpc": "2.0",
            "id": self.next_id(),
            "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": capabilities or {},
                "clientInfo": loadgen.CLIENT_INFO,
            },
        }
        response = await self.send(
            f"{kind}:initialize",
            conn,
            raw_request(self.target, "POST", post_headers(), dumps(message)),
        )
        session_id = response.headers.get("mcp-session-id") if response else None
        if response is None or response.status != 200 or not session_id:
            return None
        try:
            reply = loadgen.json_rpc_reply("initialize", response, message["id"])
        except (loadgen.ProtocolFailure, ValueError):
            self.tally.rpc_errors[f"{kind}:initialize"] += 1
            return None
        session = Session(session_id, reply["result"]["protocolVersion"])
        await self.send(f"{kind}:initialized", conn, self.mcp.initialized_request(session))
        return session

    async def call(
        self, kind: str, conn: Connection, session: Session, method: str, params: dict[str, Any]
    ) -> Response | None:
        message = {"jsonrpc": "2.0", "id": self.next_id(), "method": method, "params": params}
        raw = raw_request(self.target, "POST", post_headers(session), dumps(message))
        return await self.send(kind, conn, raw)

    async def alive(self, kind: str, conn: Connection, session: Session) -> None:
        """A ping after a hostile message: counted under ``kind:ping-after`` (404: session lost)."""
        await self.call(f"{kind}:ping-after", conn, session, "ping", {})

    async def delete(self, kind: str, conn: Connection, session: Session) -> None:
        await self.send(f"{kind}:delete", conn, self.mcp.delete(session))


# -- held resources ------------------------------------------------------------------


@dataclass
class Held:
    """What the hostile mix keeps open: at most *cap* per kind, released oldest first."""

    client: Client
    cap: int
    kinds: dict[str, deque[tuple[Connection | None, Session | None]]] = field(default_factory=dict)
    peak: Counter[str] = field(default_factory=Counter)

    async def add(self, kind: str, conn: Connection | None, session: Session | None) -> None:
        queue = self.kinds.setdefault(kind, deque())
        while queue and len(queue) >= self.cap:
            await self.release(kind, *queue.popleft())
        queue.append((conn, session))
        self.peak[kind] = max(self.peak[kind], len(queue))

    async def release(self, kind: str, conn: Connection | None, session: Session | None) -> None:
        with trio.move_on_after(RELEASE_TIMEOUT):
            if conn is not None:
                await conn.aclose()
            if session is not None:
                fresh = Connection(self.client.target)
                try:
                    await self.client.delete(f"{kind}:release", fresh, session)
                finally:
                    await fresh.aclose()

    async def release_all(self) -> None:
        for kind, queue in self.kinds.items():
            while queue:
                await self.release(kind, *queue.popleft())


# -- the hostile probes ---------------------------------------------------------------

HUGE = "1" * 5000  # over Python's 4,300-digit int-string limit
DEEP = 600


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass
class Probes:
    """One hostile client per call; each makes a few requests and counts every answer."""

    client: Client
    held: Held

    @property
    def target(self) -> Target:
        return self.client.target

    def _initialize_body(self, request_id: str, params_extra: dict[str, Any] | None = None) -> str:
        params = {
            "protocolVersion": loadgen.PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": loadgen.CLIENT_INFO,
            **(params_extra or {}),
        }
        return (
            f'{{"jsonrpc":"2.0","id":{request_id},"method":"initialize",'
            f'"params":{json.dumps(params, separators=(",", ":"))}}}'
        )

    async def close_if_opened(self, kind: str, conn: Connection, response: Response | None) -> None:
        """DELETE a session a hostile ``initialize`` was given (a 200 can be the right answer)."""
        if response is not None and response.headers.get("mcp-session-id"):
            session = Session(response.headers["mcp-session-id"], loadgen.PROTOCOL_VERSION)
            await self.client.delete(kind, conn, session)

    async def huge_int(self, conn: Connection) -> None:
        body = self._initialize_body(HUGE).encode()
        raw = raw_request(self.target, "POST", post_headers(), body)
        kind = "huge-int:no-session"
        await self.close_if_opened(kind, conn, await self.client.send(kind, conn, raw))
        session = await self.client.open_session("huge-int", conn)
        if session is None:
            return
        body = (
            f'{{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            f'"params":{{"name":"echo","arguments":{{"text":{HUGE}}}}}}}'
        ).encode()
        raw = raw_request(self.target, "POST", post_headers(session), body)
        await self.client.send("huge-int:in-session", conn, raw)
        await self.client.alive("huge-int", conn, session)
        await self.client.delete("huge-int", conn, session)

    async def surrogates(self, conn: Connection) -> None:
        lone = '"\\ud800"'
        bodies = {
            "surrogate:no-session": f'{{"jsonrpc":"2.0","id":{lone},"method":"ping"}}',
            "surrogate:initialize-id": self._initialize_body(lone),
            "surrogate:in-initialize": self._initialize_body(
                "1", {"clientInfo": {"name": "\ud800", "version": "1"}}
            ),
        }
        for kind, text in bodies.items():
            body = text.encode("utf-8", "surrogatepass")
            # The surrogate goes as a JSON escape, not as raw (invalid UTF-8) bytes.
            body = body.replace("\ud800".encode("utf-8", "surrogatepass"), b"\\ud800")
            raw = raw_request(self.target, "POST", post_headers(), body)
            await self.close_if_opened(kind, conn, await self.client.send(kind, conn, raw))
        session = await self.client.open_session("surrogate", conn)
        if session is None:
            return
        for kind, text in (
            ("surrogate:in-params", '{"name":"echo","arguments":{"text":"\\ud800"}}'),
            ("surrogate:in-id", None),
            ("surrogate:in-method", None),
        ):
            if kind == "surrogate:in-params":
                body = f'{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{text}}}'
            elif kind == "surrogate:in-id":
                body = f'{{"jsonrpc":"2.0","id":{lone},"method":"ping"}}'
            else:
                body = '{"jsonrpc":"2.0","id":3,"method":"\\ud800x"}'
            raw = raw_request(self.target, "POST", post_headers(session), body.encode())
            await self.client.send(kind, conn, raw)
        await self.client.alive("surrogate", conn, session)
        await self.client.delete("surrogate", conn, session)

    async def odd_digits(self, conn: Connection) -> None:
        body = self._initialize_body("1").encode()
        variants = {
            "odd-digits:host-superscript": {"Host": f"{self.target.host}:\u00b2"},
            "odd-digits:host-5000-digits": {"Host": f"{self.target.host}:{HUGE}"},
            "odd-digits:origin-superscript": {"Origin": f"http://{self.target.host}:\u00b9\u00b2"},
        }
        for kind, extra in variants.items():
            raw = raw_request(self.target, "POST", {**post_headers(), **extra}, body)
            await self.close_if_opened(kind, conn, await self.client.send(kind, conn, raw))
        session = await self.client.open_session("odd-digits", conn)
        if session is None:
            return
        stream = Connection(self.target)
        raw = raw_request(
            self.target,
            "GET",
            {
                "Accept": "text/event-stream",
                "Mcp-Session-Id": session.session_id,
                "MCP-Protocol-Version": session.version,
                "Last-Event-ID": "g1_\u00b9\u00b2",
            },
        )
        try:
            await self.client.send("odd-digits:last-event-id", stream, raw, head_only=True)
        finally:
            await stream.aclose()
        await self.client.alive("odd-digits", conn, session)
        await self.client.delete("odd-digits", conn, session)

    async def deep_nesting(self, conn: Connection) -> None:
        body = self._initialize_body("1", {"capabilities": _nested(DEEP)}).encode()
        response = await self.client.send(
            "deep:initialize-capabilities",
            conn,
            raw_request(self.target, "POST", post_headers(), body),
        )
        await self.close_if_opened("deep:initialize-capabilities", conn, response)
        session = await self.client.open_session("deep", conn)
        if session is None:
            return
        arguments = "[" * 100_000 + "]" * 100_000
        body = (
            f'{{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            f'"params":{{"name":"echo","arguments":{{"text":{arguments}}}}}}}'
        ).encode()
        raw = raw_request(self.target, "POST", post_headers(session), body)
        await self.client.send("deep:in-session-100k", conn, raw)
        await self.client.alive("deep", conn, session)
        await self.client.delete("deep", conn, session)

    async def oversized(self, conn: Connection) -> None:
        # Over the default 4 MiB body limit, once with Content-Length, once chunked.
        body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * (4 << 20)
        body += b'"}}'
        raw = raw_request(self.target, "POST", post_headers(), body)
        await self.client.send_while_reading("oversized:content-length", conn, raw)
        chunked = [*post_headers().items(), ("Transfer-Encoding", "chunked")]
        head = (
            f"POST {self.target.path} HTTP/1.1\r\nHost: {self.target.host}:{self.target.port}\r\n"
        )
        head += "".join(f"{k}: {v}\r\n" for k, v in chunked) + "\r\n"
        chunk = b"x" * 65536
        pieces = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 66 + [b"0\r\n\r\n"]
        await self.client.send_while_reading(
            "oversized:chunked", Connection(self.target), head.encode() + b"".join(pieces)
        )

    async def big_batch(self, conn: Connection) -> None:
        session = await self.client.open_session("batch", conn, version=OLD_VERSION)
        if session is None:
            return
        size = 100
        batch = [
            {
                "jsonrpc": "2.0",
                "id": 10_000 + i,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": f"b{i}"}},
            }
            for i in range(size)
        ]
        raw = raw_request(self.target, "POST", post_headers(session), dumps(batch))
        response = await self.client.send("batch:100-requests", conn, raw)
        if response is not None and response.status == 200:
            try:
                answered = {
                    m.get("id") for m in messages_in(response) if "result" in m or "error" in m
                }
            except ValueError:
                answered = set()
            got = len(answered & {m["id"] for m in batch})
            self.client.tally.notes[
                "batch answered in full" if got == size else "batch answered short"
            ] += 1
        await self.client.alive("batch", conn, session)
        await self.client.delete("batch", conn, session)

    async def deletes(self, conn: Connection) -> None:
        await self.client.send(
            "delete:unknown-session",
            conn,
            raw_request(self.target, "DELETE", {"Mcp-Session-Id": "no-such-session"}),
        )
        await self.client.send("delete:no-session-id", conn, raw_request(self.target, "DELETE"))
        session = await self.client.open_session("delete", conn)
        if session is None:
            return
        await self.client.delete("delete", conn, session)
        await self.client.send("delete:twice", conn, self.client.mcp.delete(session))
        await self.client.send(
            "delete:then-post", conn, self.client.mcp.tool_call_request(session)[1]
        )

    async def stalled_reader(self, conn: Connection) -> None:
        session = await self.client.open_session("stalled-reader", conn)
        if session is None:
            return
        reader = SlowReader(self.target)
        message = {
            "jsonrpc": "2.0",
            "id": self.client.next_id(),
            "method": "tools/call",
            "params": {"name": "big", "arguments": {"size": 1 << 20}},
        }
        raw = raw_request(self.target, "POST", post_headers(session), dumps(message))
        # Held before it is sent, so a probe cut short by its deadline still has it closed.
        await self.held.add("stalled-reader", reader, session)
        await self.client.send("stalled-reader:1MiB-reply", reader, raw, head_only=True)

    async def get_stream(self, conn: Connection) -> None:
        session = await self.client.open_session("get-stream", conn)
        if session is None:
            return
        stream = Connection(self.target)
        await self.held.add("get-stream", stream, session)
        raw = self.client.mcp.get_stream(session)
        await self.client.send("get-stream:open", stream, raw, head_only=True)

    async def long_subscribe(self, conn: Connection) -> None:
        session = await self.client.open_session("subscribe", conn)
        if session is None:
            return
        await self.held.add("subscribe", None, session)
        for i in range(4):
            uri = f"soak://watched/{i}/" + "u" * (256 * 1024)
            await self.client.call("subscribe:256KiB-uri", conn, session, "resources/subscribe",
                                   {"uri": uri})  # fmt: skip
        await self.client.alive("subscribe", conn, session)

    async def pending_sampling(self, conn: Connection) -> None:
        session = await self.client.open_session(
            "sampling", conn, version=OLD_VERSION, capabilities={"sampling": {}}
        )
        if session is None:
            return
        batch = [
            {
                "jsonrpc": "2.0",
                "id": self.client.next_id(),
                "method": "tools/call",
                "params": {"name": "ask", "arguments": {"prompt": f"p{i}"}},
            }
            for i in range(20)
        ]
        stream = Connection(self.target)
        raw = raw_request(self.target, "POST", post_headers(session), dumps(batch))
        # Never answered: the server's sampling requests stay pending until they time out.
        await self.held.add("sampling", stream, session)
        await self.client.send("sampling:20-pending", stream, raw, head_only=True)

    def rotation(self) -> list[Callable[[Connection], Awaitable[None]]]:
        return [
            self.huge_int,
            self.surrogates,
            self.odd_digits,
            self.deep_nesting,
            self.big_batch,
            self.deletes,
            self.stalled_reader,
            self.get_stream,
            self.long_subscribe,
            self.pending_sampling,
            self.oversized,
        ]


# -- the soak ------------------------------------------------------------------------


@dataclass
class Progress:
    churned: int = 0
    churn_failed: int = 0
    probes: int = 0
    load_done: bool = False


@dataclass
class Sample:
    t: float
    rss_kib: int
    churned: int
    probes: int
    live_sessions: int | None
    phase: str


_LIVE = re.compile(rb"^\w*_sessions_live (\S+)$", re.MULTILINE)


async def live_sessions(client: Client, conn: Connection) -> int | None:
    raw = raw_request(client.target, "GET", path="/metrics")
    try:
        with trio.move_on_after(2):
            response = await conn.request(raw)
            match = _LIVE.search(response.body)
            return int(float(match.group(1))) if match else None
    except Exception:  # a metrics miss is a gap in the curve, not a failure
        pass
    await conn.aclose()  # the request was cut short: start afresh next time
    return None


async def soak(args: argparse.Namespace, server: bench_run.Server) -> dict[str, Any]:
    target = server.target
    tally = Tally()
    client = Client(target, tally)
    held = Held(client, cap=args.hold)
    probes = Probes(client, held)
    progress = Progress()
    samples: list[Sample] = []
    started = trio.current_time()
    phase = "load"
    stopped: dict[str, Any] = {}
    load_seconds: float | None = None

    def elapsed() -> float:
        return trio.current_time() - started

    async def sampler(cancel: trio.CancelScope) -> None:
        conn = Connection(target)
        try:
            while True:
                if server.process.poll() is not None:
                    stopped["server_exited"] = server.process.returncode
                    cancel.cancel()
                    return
                try:
                    rss = server.rss_kib()
                except (OSError, RuntimeError):
                    stopped["server_exited"] = server.process.poll()
                    cancel.cancel()
                    return
                live = await live_sessions(client, conn)
                samples.append(
                    Sample(round(elapsed(), 2), rss, progress.churned, progress.probes, live, phase)
                )
                await trio.sleep(args.sample_interval)
        finally:
            await conn.aclose()

    async def churn_worker(budget: loadgen.Budget) -> None:
        conn = Connection(target)
        try:
            while budget.take():
                if args.churn_rate > 0:  # session k starts at k / rate, whoever takes it
                    await trio.sleep_until(started + (budget.started - 1) / args.churn_rate)
                ok = False
                with trio.move_on_after(PROBE_TIMEOUT):
                    session = await client.open_session("churn", conn)
                    if session is not None:
                        response = await client.call(
                            "churn:tools/call", conn, session, "tools/call",
                            {"name": "echo", "arguments": {"text": "hello"}},
                        )  # fmt: skip
                        await client.delete("churn", conn, session)
                        ok = response is not None and response.status == 200
                if ok:
                    progress.churned += 1
                else:
                    progress.churn_failed += 1
                    await conn.aclose()
        finally:
            await conn.aclose()

    async def hostile(budget: loadgen.Budget) -> None:
        rotation = probes.rotation()
        limiter = trio.CapacityLimiter(args.hostile_concurrency)

        async def one(probe: Callable[[Connection], Awaitable[None]], token: object) -> None:
            conn = Connection(target)
            try:
                with trio.move_on_after(PROBE_TIMEOUT) as scope:
                    await probe(conn)
                if scope.cancelled_caught:
                    tally.notes[f"probe over {PROBE_TIMEOUT:g} s: {probe.__name__}"] += 1
            except Exception as exc:  # a probe's own bug must not end the soak
                tally.notes[f"probe failed: {probe.__name__}: {type(exc).__name__}"] += 1
            finally:
                await conn.aclose()
                progress.probes += 1
                limiter.release_on_behalf_of(token)

        async with trio.open_nursery() as nursery:
            next_at = trio.current_time()
            for turn in itertools.count():
                if progress.load_done or not budget.take():
                    break
                await trio.sleep_until(next_at)
                next_at += 1 / args.hostile_rate
                token = object()
                await limiter.acquire_on_behalf_of(token)
                nursery.start_soon(one, rotation[turn % len(rotation)], token)

    with trio.CancelScope() as everything:
        async with trio.open_nursery() as outer:
            outer.start_soon(sampler, everything)
            churn_budget = loadgen.Budget(args.sessions, args.duration)
            hostile_budget = loadgen.Budget(args.hostile_count, args.duration)
            churn_budget.start()
            hostile_budget.start()
            async with trio.open_nursery() as load:
                if args.hostile_rate > 0:
                    load.start_soon(hostile, hostile_budget)
                async with trio.open_nursery() as churners:
                    for _ in range(args.concurrency):
                        churners.start_soon(churn_worker, churn_budget)
                progress.load_done = True
            load_seconds = elapsed()
            phase = "release"
            with trio.move_on_after(60):
                await held.release_all()
            phase = "settle"
            await trio.sleep(args.settle)
            outer.cancel_scope.cancel()
    return {
        "load_seconds": None if load_seconds is None else round(load_seconds, 2),
        "seconds": round(elapsed(), 2),
        "progress": progress,
        "tally": tally,
        "held_peak": dict(held.peak),
        "probes": [probe.__name__ for probe in probes.rotation()],
        "samples": samples,
        "stopped": stopped,
    }


# -- the report ----------------------------------------------------------------------


def fit(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than 3 points or no spread)."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def rss_summary(samples: list[Sample], load_seconds: float | None) -> dict[str, Any]:
    if not samples:
        return {}
    load = [s for s in samples if s.phase == "load"] or samples
    end_t = load_seconds if load_seconds is not None else load[-1].t
    half = [s for s in load if s.t >= end_t / 2]
    mib = [s.rss_kib / 1024 for s in half]
    per_s = fit([s.t for s in half], mib)
    per_session = fit([float(s.churned) for s in half], mib)
    out: dict[str, Any] = {
        "start_mib": round(samples[0].rss_kib / 1024, 1),
        "peak_mib": round(max(s.rss_kib for s in samples) / 1024, 1),
        "end_of_load_mib": round(load[-1].rss_kib / 1024, 1),
        "end_mib": round(samples[-1].rss_kib / 1024, 1),
        "last_half_samples": len(half),
        "last_half_from_s": round(half[0].t, 1) if half else None,
        "slope_last_half_mib_per_min": None if per_s is None else round(per_s * 60, 3),
        "slope_last_half_kib_per_1000_sessions": (
            None if per_session is None else round(per_session * 1024 * 1000, 1)
        ),
    }
    if per_s is not None and half:
        growth = per_s * (half[-1].t - half[0].t)
        allowed = max(2.0, 0.03 * half[0].rss_kib / 1024)
        out["fitted_growth_last_half_mib"] = round(growth, 2)
        out["allowed_growth_last_half_mib"] = round(allowed, 2)
        out["levels_off"] = growth <= allowed
    return out


def summarise(args: argparse.Namespace, outcome: dict[str, Any]) -> dict[str, Any]:
    tally: Tally = outcome["tally"]
    progress: Progress = outcome["progress"]
    samples: list[Sample] = outcome["samples"]
    live = [s.live_sessions for s in samples if s.live_sessions is not None]
    return {
        "load_seconds": outcome["load_seconds"],
        "seconds": outcome["seconds"],
        "sessions_churned": progress.churned,
        "sessions_failed": progress.churn_failed,
        "hostile_probes": progress.probes,
        "totals": tally.totals(),
        "five_xx": tally.five_xx(),
        "answers": tally.by_kind(),
        "rpc_errors": dict(tally.rpc_errors),
        "notes": dict(tally.notes),
        "held_peak": outcome["held_peak"],
        "probes": outcome["probes"],
        "rss": rss_summary(samples, outcome["load_seconds"]),
        "live_sessions": {
            "peak": max(live) if live else None,
            "end": live[-1] if live else None,
        },
        "server": outcome["stopped"],
        "samples": [s.__dict__ for s in samples],
    }


_SESSION_ID = re.compile(r"session [A-Za-z0-9_-]{16,}")


def logged_errors(log: Path) -> dict[str, int]:
    """The server log's ERROR lines, counted by message (session ids and times left out)."""
    found: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if " ERROR " in line:
                found[_SESSION_ID.sub("session <id>", line.split(" ERROR ", 1)[1])] += 1
    return dict(found.most_common())


def markdown(results: dict[str, Any]) -> str:
    meta, r = results["meta"], results["soak"]
    rss, totals = r["rss"], r["totals"]
    server = r["server"]
    lines = [
        f"Soak run {meta['started']} on commit {meta['machine']['git']} "
        f"(`{meta['command']}`), {r['seconds']} s in all, "
        + (
            f"{r['load_seconds']} s of load."
            if r["load_seconds"] is not None
            else "**the load was cut short** (see the server line)."
        ),
        "",
        f"- sessions churned: {r['sessions_churned']:,} (failed: {r['sessions_failed']:,}); "
        f"hostile probes: {r['hostile_probes']:,}",
        "- answers: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()),
        f"- **5xx: {totals.get('5xx', 0):,}**"
        + (
            " (" + ", ".join(f"{k}: {v:,}" for k, v in r["five_xx"].items()) + ")"
            if r["five_xx"]
            else ""
        ),
        f"- connection errors: {totals.get('conn-error', 0):,}; timeouts: "
        f"{totals.get('timeout', 0):,}; client-side errors: {totals.get('client-error', 0):,}",
        f"- RSS (MiB): start {rss.get('start_mib')}, peak {rss.get('peak_mib')}, end of load "
        f"{rss.get('end_of_load_mib')}, end {rss.get('end_mib')}; slope over the last half "
        f"{rss.get('slope_last_half_mib_per_min')} MiB/min "
        f"({rss.get('slope_last_half_kib_per_1000_sessions')} KiB per 1,000 sessions); "
        f"fitted growth over the last half {rss.get('fitted_growth_last_half_mib')} MiB "
        f"(allowed {rss.get('allowed_growth_last_half_mib')}): "
        f"**levels off: {'yes' if rss.get('levels_off') else 'no'}**",
        f"- live sessions (server metrics): peak {r['live_sessions']['peak']}, at the end "
        f"{r['live_sessions']['end']}"
        + (
            " (**left alive**: the soak closed every session it was given)"
            if r["live_sessions"]["end"]
            else ""
        ),
        f"- server stop: {server.get('stop_s')} s after SIGTERM, SIGKILL needed: "
        f"{server.get('sigkill')}, exit code {server.get('returncode')}"
        + (
            f"; **exited during the run** ({server['server_exited']})"
            if "server_exited" in server
            else ""
        ),
        f"- server log: {server.get('log_problems') or 'no tracebacks, no ERROR lines'}",
    ]
    for message, n in r["server"].get("logged_errors", {}).items():
        lines.append(f"  - logged {n:,} times: `{message}`")
    if r["notes"]:
        lines.append("- notes: " + ", ".join(f"{k}: {v:,}" for k, v in r["notes"].items()))
    lines += ["", "| kind | answers by status |", "|---|---|"]
    for kind, statuses in r["answers"].items():
        cells = ", ".join(
            f"**{s}: {n:,}**" if s.startswith("5") or not s.isdigit() else f"{s}: {n:,}"
            for s, n in statuses.items()
        )
        lines.append(f"| {kind} | {cells} |")
    return "\n".join(lines) + "\n"


# -- command line --------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 sessions, under a minute")
    parser.add_argument("--sessions", type=int, help="sessions to churn (20000; quick 2000)")
    parser.add_argument("--duration", type=float, help="cap on the load, seconds (480; quick 40)")
    parser.add_argument("--concurrency", type=int, default=4, help="churn workers (4)")
    parser.add_argument(
        "--churn-rate", type=float, default=100.0, help="sessions started per second (100; 0: as "
        "fast as the workers go)",
    )  # fmt: skip
    parser.add_argument("--hostile-rate", type=float, help="hostile probes per second (8; 0: none)")
    parser.add_argument("--hostile-count", type=int, help="hostile probes at most (5000)")
    parser.add_argument("--hostile-concurrency", type=int, default=4, help="probes at once (4)")
    parser.add_argument("--hold", type=int, help="held sockets/sessions per kind (16; quick 4)")
    parser.add_argument("--sample-interval", type=float, help="seconds between RSS samples (1)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds sampled after (3)")
    parser.add_argument("--reply-mode", choices=("sse", "json"), default="sse")
    parser.add_argument("--sqlite", action="store_true", help="serve with a SQLite store")
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve option")
    parser.add_argument("--out", help="output folder (bench/results/soak-<timestamp>)")
    parser.add_argument(
        "--png", help=f"also write the plot here ({DOCS_PNG.relative_to(ROOT)}; quick: none)"
    )
    parser.add_argument("--no-docs-png", action="store_true", help="plot only into --out")
    args = parser.parse_args(argv)
    defaults = {
        "sessions": (20_000, 2_000),
        "duration": (480.0, 40.0),
        "hostile_rate": (8.0, 8.0),
        "hostile_count": (5_000, 400),
        "sample_interval": (1.0, 0.25),
        "hold": (16, 4),
    }
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.png is None and not args.quick and not args.no_docs_png:
        args.png = str(DOCS_PNG)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else bench_run.RESULTS / f"soak-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    launch = bench_run.Launch(out)
    server_args = ["--metrics-path", "/metrics", *args.server_arg]
    if args.sqlite:
        server_args += ["--sqlite", str(out / "soak.db")]
    results: dict[str, Any] = {
        "meta": {
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *(argv or sys.argv)]),
            "machine": bench_run.machine(),
            "options": vars(args),
            "server_args": server_args,
        }
    }
    print(f"# soak {stamp}: commit {results['meta']['machine']['git']}, out {out}", flush=True)
    began = time.monotonic()
    with bench_run.running_server(
        launch, "soak", "soak", reply_mode=args.reply_mode, ours_args=server_args
    ) as server:
        outcome = trio.run(soak, args, server)
    soaked = summarise(args, outcome)
    stop = launch.stops[-1] if launch.stops else {}
    soaked["server"].update(
        stop_s=stop.get("stop_s"),
        sigkill=stop.get("sigkill"),
        returncode=stop.get("returncode"),
        log_problems={
            k: v
            for p in launch.log_problems
            for k, v in p.items()
            if k in ("tracebacks", "error_lines")
        },
    )
    soaked["server"]["logged_errors"] = logged_errors(out / f"soak-soak-{args.reply_mode}.log")
    results["soak"] = soaked
    results["meta"]["duration_s"] = round(time.monotonic() - began, 1)
    (out / "soak.json").write_text(json.dumps(results, indent=1) + "\n")
    with open(out / "samples.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(soaked["samples"])
    report = markdown(results)
    (out / "soak.md").write_text(report)
    print()
    print(report)
    try:
        import plots
    except ImportError as exc:
        print(f"(no plot: {exc}; pip install -e '.[bench]')")
    else:
        for png in [out / "soak.png", *([Path(args.png)] if args.png else [])]:
            plots.soak_plot(results, png)
            print(f"plot: {png}")
    print(f"results: {out} ({results['meta']['duration_s']} s)")
    # 5xx and connection errors are findings, reported above; a server that died is a failure.
    return 1 if "server_exited" in soaked["server"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
