"""A server restarted on the same SQLite file keeps its sessions and their events."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import httpx
import trio

from _processes import (
    ServerProcess,
    initialize,
    interrupt_logging_call,
    resume_stream,
    session_headers,
)

if TYPE_CHECKING:
    from pathlib import Path

TARGET = "examples/conformance_server.py:server"


async def test_sessions_and_missed_events_survive_a_sigterm_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "mcp.db")
    first = await ServerProcess.start(TARGET, "--sqlite", database)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, first.url)
            headers = session_headers(session_id)
            r = await http.post(
                first.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "logging/setLevel",
                    "params": {"level": "info"},
                },
                headers=headers,
            )
            assert r.status_code == 200
            call = {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "test_tool_with_logging", "arguments": {}},
            }
            last_id = await interrupt_logging_call(first.url, headers, request_id=3)
            await trio.sleep(0.5)  # the tool finishes while nobody listens
        assert await first.stop(signal.SIGTERM) == 0
        assert b"Traceback" not in first.stderr, first.stderr.decode()
        assert b"reason=shutdown" in first.stderr
    finally:
        await first.kill()

    second = await ServerProcess.start(TARGET, "--sqlite", database)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            headers = session_headers(session_id)
            r = await http.post(
                second.url, json={"jsonrpc": "2.0", "id": 4, "method": "ping"}, headers=headers
            )
            assert r.status_code == 200, r.text
            replayed = await resume_stream(http, second.url, session_id, last_id)
            assert [m.get("params", {}).get("data") for m in replayed[:-1]] == [
                "Tool processing data",
                "Tool execution completed",
            ]
            assert replayed[-1] == {
                "jsonrpc": "2.0",
                "id": 3,
                "result": {
                    "content": [{"type": "text", "text": "Tool with logging executed successfully"}]
                },
            }
            # The restored session keeps the client's log level, and works on.
            r = await http.post(
                second.url,
                json=call,
                headers={**headers, "accept": "application/json, text/event-stream"},
            )
            assert r.status_code == 200
            assert "Tool execution started" in r.text
            # DELETE ends it for good: a third start cannot bring it back.
            assert (await http.delete(second.url, headers=headers)).status_code == 200
        assert await second.stop() == 0
        assert b"Traceback" not in second.stderr, second.stderr.decode()
        assert b"session restored" in second.stderr
    finally:
        await second.kill()

    third = await ServerProcess.start(TARGET, "--sqlite", database)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                third.url,
                json={"jsonrpc": "2.0", "id": 5, "method": "ping"},
                headers=session_headers(session_id),
            )
            assert r.status_code == 404
    finally:
        await third.stop()
