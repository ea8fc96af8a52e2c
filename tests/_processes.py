"""Helpers for tests that run servers as real processes (restart, several instances)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from _harness import parse_sse
from conftest import INIT_HEADERS, initialize_body

if TYPE_CHECKING:
    import httpx

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python -m trio_mcp_sessions serve ...`` on 127.0.0.1:0, stopped by its PID."""

    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.stderr = b""

    @classmethod
    async def start(cls, target: str, *args: str) -> ServerProcess:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "trio_mcp_sessions",
                "serve",
                target,
                "--bind",
                "127.0.0.1:0",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        buffer = b""
        with trio.fail_after(30):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    err = b""
                    if process.stderr is not None:
                        err = b"".join([c async for c in process.stderr])
                    raise RuntimeError(f"server exited before printing its URL: {err.decode()}")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        return cls(process, line.split()[3])

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it; returns its exit code."""
        self.process.send_signal(signum)
        with trio.fail_after(30):
            if self.process.stderr is not None:
                self.stderr = b"".join([c async for c in self.process.stderr])
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def initialize(http: httpx.AsyncClient, url: str, **headers: str) -> str:
    r = await http.post(url, json=initialize_body(), headers={**INIT_HEADERS, **headers})
    assert r.status_code == 200, r.text
    session_id = r.headers["mcp-session-id"]
    r = await http.post(
        url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=session_headers(session_id, **headers),
    )
    assert r.status_code == 202
    return session_id


def session_headers(session_id: str, **extra: str) -> dict[str, str]:
    return {
        **INIT_HEADERS,
        "mcp-session-id": session_id,
        "mcp-protocol-version": "2025-11-25",
        **extra,
    }


async def post_then_drop(
    url: str, body: dict[str, Any], headers: dict[str, str], marker: str
) -> str:
    """POST, read the SSE response until *marker* appears, then cut the connection.

    A raw socket with h11 as the client-side parser: the abrupt close is the
    point, and httpx's streaming generators complain when abandoned midway.
    """
    import json
    from urllib.parse import urlsplit

    import h11

    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    payload = json.dumps(body).encode()
    connection = h11.Connection(h11.CLIENT)
    request_headers = [
        ("host", f"{parts.hostname}:{parts.port}"),
        ("content-length", str(len(payload))),
        *headers.items(),
    ]
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    received = b""
    try:
        with trio.fail_after(10):
            await stream.send_all(
                connection.send(
                    h11.Request(method="POST", target=parts.path, headers=request_headers)
                )
                + connection.send(h11.Data(data=payload))
                + connection.send(h11.EndOfMessage())
            )
            while marker.encode() not in received:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some())
                elif isinstance(event, h11.Data):
                    received += bytes(event.data)
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
    finally:
        await stream.aclose()
    return received.decode()


class SwitchableProxy:
    """A loopback TCP proxy whose target can change: one URL, several instances.

    New connections go to the current target; a client that reconnects after
    its instance went away lands on the next one, as behind a load balancer.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:

            async def pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                try:
                    while data := await source.receive_some(65536):
                        await sink.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)


def port_of(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    assert port is not None
    return port


async def interrupt_logging_call(url: str, headers: dict[str, str], request_id: int) -> str:
    """Call the example's ``test_tool_with_logging``, cut the response after its first log.

    Returns the last event id the client saw (what it resumes from).
    """
    call = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "test_tool_with_logging", "arguments": {}},
    }
    seen = parse_sse(await post_then_drop(url, call, headers, "Tool execution started"))
    last = [e for e in seen if e.data][-1]
    assert last.id is not None, last
    return last.id


async def resume_stream(
    http: httpx.AsyncClient, url: str, session_id: str, last_event_id: str
) -> list[dict[str, Any]]:
    """GET with ``Last-Event-ID``; the JSON-RPC messages replayed."""
    r = await http.get(
        url,
        headers={
            "accept": "text/event-stream",
            "mcp-session-id": session_id,
            "last-event-id": last_event_id,
        },
    )
    assert r.status_code == 200, r.text
    return [e.json() for e in parse_sse(r.text) if e.data]
