"""Shutdown with work in flight, and clients that stop reading (issue 9, items 9 and 11).

Starts the project's command line on 127.0.0.1 (``tests/_drain_server.py``'s tools) and measures:

1. 25 sessions each in a 0.1 s ``tools/call`` when SIGTERM arrives (``--graceful-timeout 3``,
   SQLite store): how many got their answer, and how many sessions a restart on the same file
   restores.
2. N clients that ask for a 500 KB reply on a socket with a 4 KiB receive buffer and never read:
   the server's RSS 2 s and 8 s later, then the time from SIGTERM to exit (``--graceful-timeout
   1``; give ``--write-timeout`` to see the write deadline cut them first).

Every loop is bounded; the servers are stopped by PID.

    .venv/bin/python bench/drain_and_stall.py [--python PATH] [--stalled 300] [--write-timeout 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
TARGET = str(ROOT / "tests" / "_drain_server.py") + ":server"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def start(python: str, *args: str) -> tuple[trio.Process, str]:
    process = await trio.lowlevel.open_process(
        [python, "-m", "trio_mcp_sessions", "serve", TARGET, "--bind", "127.0.0.1:0",
         "--log-level", "warning", "--max-sessions", "100000", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(30):
        while b"\n" not in buffer:
            buffer += await process.stdout.receive_some()
    return process, buffer.split(b"\n")[0].decode().split()[3]


async def stop(process: trio.Process, timeout: float = 30) -> float | None:
    """SIGTERM, then the seconds until it exited (``None``: killed after *timeout*)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(timeout):
        await process.wait()
        return time.monotonic() - started
    process.kill()
    await process.wait()
    return None


def session_headers(session_id: str) -> dict[str, str]:
    return {**HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}


async def initialize(http: httpx.AsyncClient, url: str) -> str:
    params = {"protocolVersion": "2025-11-25", "capabilities": {},
              "clientInfo": {"name": "drain-bench", "version": "0"}}  # fmt: skip
    r = await http.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
        headers=HEADERS,
    )  # fmt: skip
    session_id = r.headers["mcp-session-id"]
    await http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=session_headers(session_id),
    )  # fmt: skip
    return session_id


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}  # fmt: skip


async def in_flight_at_sigterm(python: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        database = os.path.join(folder, "mcp.db")
        process, url = await start(python, "--graceful-timeout", "3", "--sqlite", database)
        answered, errors = 0, []
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            ids = [await initialize(http, url) for _ in range(25)]

            async def one(session_id: str) -> None:
                nonlocal answered
                try:
                    r = await http.post(
                        url, json=call("pause", seconds=0.1), headers=session_headers(session_id)
                    )
                    answered += "paused" in r.text
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)

            async with trio.open_nursery() as nursery:
                for session_id in ids:
                    nursery.start_soon(one, session_id)
                await trio.sleep(0.07)  # every call has reached the server
                exit_after = await stop(process)
        process, url = await start(python, "--sqlite", database)
        restored = 0
        async with httpx.AsyncClient(timeout=30) as http:
            for session_id in ids:
                r = await http.post(
                    url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"},
                    headers=session_headers(session_id),
                )  # fmt: skip
                restored += r.status_code == 200
        await stop(process)
    return {"calls": 25, "answered": answered, "errors": errors, "restored": restored,
            "exit_after_s": exit_after}  # fmt: skip


async def stalled_reader(url: str, session_id: str, kib: int) -> trio.SocketStream:
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    body = json.dumps(call("big", kib=kib)).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in session_headers(session_id).items())
    await stream.send_all(
        f"POST /mcp HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n{head}\r\n"
        .encode() + body
    )  # fmt: skip
    return stream


async def stalled_readers(python: str, count: int, write_timeout: float | None) -> dict[str, Any]:
    extra = ["--write-timeout", str(write_timeout)] if write_timeout else []
    process, url = await start(python, "--graceful-timeout", "1", *extra)
    before = rss_mib(process.pid)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
        ids = [await initialize(http, url) for _ in range(count)]
    clients = [await stalled_reader(url, session_id, 500) for session_id in ids]
    await trio.sleep(2)
    at_2s = rss_mib(process.pid)
    await trio.sleep(6)
    at_8s = rss_mib(process.pid)
    exit_after = await stop(process)
    for client in clients:
        await client.aclose()
    return {"readers": count, "reply_kib": 500, "write_timeout": write_timeout,
            "rss_mib": {"before": round(before, 1), "at_2s": round(at_2s, 1),
                        "at_8s": round(at_8s, 1)},
            "sigterm_to_exit_s": None if exit_after is None else round(exit_after, 2),
            "graceful_timeout": 1}  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    print(json.dumps(await in_flight_at_sigterm(args.python)))
    print(json.dumps(await stalled_readers(args.python, args.stalled, args.write_timeout)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the server's interpreter")
    parser.add_argument("--stalled", type=int, default=300, help="clients that stop reading")
    parser.add_argument("--write-timeout", type=float, default=None, help="seconds (default 30)")
    trio.run(main, parser.parse_args())
