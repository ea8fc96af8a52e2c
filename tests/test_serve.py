"""serve(), the graceful drain, and the command line (as a real subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from _harness import manager_of
from conftest import INIT_HEADERS, initialize_body
from trio_mcp_sessions import McpServer, StreamableHTTPApp, serve

ROOT = Path(__file__).resolve().parent.parent


async def test_serve_drains_streams_with_a_retry_hint_then_closes_sessions() -> None:
    server = McpServer("drain")
    app = StreamableHTTPApp(server, retry_ms=4321)
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(
                    serve, app, bind="127.0.0.1:0", graceful_timeout=1, shutdown_trigger=stop.wait
                )
            )
            url = f"{urls[0]}/mcp"
            async with httpx.AsyncClient(timeout=5) as http:
                r = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
                session_headers = {
                    "accept": "text/event-stream",
                    "mcp-session-id": r.headers["mcp-session-id"],
                }
                async with http.stream("GET", url, headers=session_headers) as stream:
                    assert stream.status_code == 200
                    lines = stream.aiter_lines()
                    first = await lines.__anext__()  # the priming event
                    assert first.startswith("id: ")
                    stop.set()
                    rest = [line async for line in lines]
            assert "retry: 4321" in rest
    assert manager_of(app).statistics().closed_by_reason == {"shutdown": 1}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_mcp_sessions", *args]


def test_cli_help_lists_the_options() -> None:
    result = subprocess.run(_cli("serve", "--help"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in (
        "--bind",
        "--max-sessions",
        "--idle-timeout",
        "--init-timeout",
        "--reply-mode",
        "--eviction",
        "--max-lifetime",
        "--eviction-wait",
        "--rate-limit",
        "--rate-limit-per-client",
        "--metrics-path",
    ):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-limit", "0/60"], "pass no rate limit instead"),
        (["--rate-limit-per-client", "ten"], "CREATIONS/SECONDS"),
        (["--eviction", "random"], "invalid choice"),
        (["--max-lifetime", "-5"], "max_lifetime must be positive"),
    ],
)
def test_cli_refuses_invalid_bounds_clearly(args: list[str], message: str) -> None:
    result = subprocess.run(
        _cli("serve", "examples/notes_server.py:server", *args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_invalid_limits_clearly() -> None:
    result = subprocess.run(
        _cli("serve", "examples/notes_server.py:server", "--max-sessions", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "max_sessions must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_cli_serves_and_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    process = await trio.lowlevel.open_process(
        _cli("serve", "examples/notes_server.py:server", "--bind", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        with trio.fail_after(30):
            buffer = b""
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some()
                assert chunk, "the server exited before printing its URL"
                buffer += chunk
            line = buffer.split(b"\n", 1)[0].decode()
            assert line.startswith("Serving MCP on http://127.0.0.1:")
            url = line.split()[3]
            async with httpx.AsyncClient(timeout=5) as http:
                r = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
                assert r.status_code == 200
            process.send_signal(signum)
            out = buffer + b"".join([chunk async for chunk in process.stdout])
            err = b"".join([chunk async for chunk in process.stderr])
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert b"Stopped." in out
    assert b"Traceback" not in err, err.decode()
    assert b"reason=shutdown" in err


async def test_serve_listens_with_a_deep_backlog() -> None:
    """A burst of connects over Hypercorn's backlog of 100 would wait for SYN retries."""
    from hypercorn.config import Config

    from trio_mcp_sessions._serve import BACKLOG

    config = Config()
    stop = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve,
                    McpServer("b"),
                    bind="127.0.0.1:0",
                    config=config,
                    shutdown_trigger=stop.wait,
                )
            )
            assert config.backlog == 100  # a given config keeps its own
            stop.set()
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve,
                    McpServer("b"),
                    bind="127.0.0.1:0",
                    config=config,
                    backlog=BACKLOG,
                    shutdown_trigger=stop.wait,
                )
            )
            assert config.backlog == BACKLOG == 1024
            stop.set()


def test_the_command_line_freezes_startup_objects_unless_told_not_to() -> None:
    import gc

    from trio_mcp_sessions._cli import _freeze_startup_objects, _parser

    assert _parser().parse_args(["serve", "x:server"]).gc_freeze is True
    assert _parser().parse_args(["serve", "x:server", "--no-gc-freeze"]).gc_freeze is False
    gc.unfreeze()
    try:
        _freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process is not a server


def test_cli_says_its_version() -> None:
    from trio_mcp_sessions import __version__

    result = subprocess.run(_cli("--version"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"trio-mcp-sessions {__version__}"
