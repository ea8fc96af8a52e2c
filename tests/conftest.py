"""Shared fixtures: a real Hypercorn (trio worker) on a port-0 loopback socket."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from _redis_server import redis_server_fixture, redis_server_process_fixture  # noqa: F401
from trio_mcp_sessions import McpServer, StreamableHTTPApp

INIT_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
}


def initialize_body(
    version: str = "2025-11-25", request_id: int | str = 1, **caps: Any
) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": caps,
            "clientInfo": {"name": "tests", "version": "0"},
        },
    }


StartServer = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> StartServer:
    """``url = await start_server(app_or_server, **app_options)``: serve on 127.0.0.1:0.

    Returns the endpoint URL (``http://127.0.0.1:PORT/mcp``); *backlog* is the
    listening socket's (Hypercorn's default is 100). The server stops
    when the test's nursery is cancelled at teardown.
    """

    async def start(
        target: McpServer | StreamableHTTPApp, *, backlog: int = 100, **options: Any
    ) -> str:
        app = (
            target
            if isinstance(target, StreamableHTTPApp)
            else StreamableHTTPApp(target, **options)
        )
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 0.5
        config.backlog = backlog  # Hypercorn's 100 unless a test sends a burst of connects
        binds = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=trio.sleep_forever)  # type: ignore[arg-type]
        )
        return f"{binds[0]}{app.path}"

    return start


@pytest.fixture
def wall(mock_clock: trio.testing.MockClock) -> Callable[[], float]:
    """A wall clock (POSIX seconds) that moves with trio's mock clock: a verifier's ``clock``."""
    base = 1_800_000_000.0 - mock_clock.current_time()

    def now() -> float:
        return base + trio.current_time()

    return now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


class TracebackRecorder(logging.Handler):
    """Collects log records that carry a traceback (there should be none)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.records.append(record)

    def describe(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def tracebacks() -> Iterator[TracebackRecorder]:
    """Records every logged traceback from our loggers and Hypercorn's."""
    recorder = TracebackRecorder()
    recorder.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    loggers = [logging.getLogger(n) for n in ("trio_mcp_sessions", "hypercorn.error", "")]
    for log in loggers:
        log.addHandler(recorder)
    try:
        yield recorder
    finally:
        for log in loggers:
            log.removeHandler(recorder)


@pytest.fixture
def no_tracebacks(tracebacks: TracebackRecorder) -> Iterator[None]:
    """Fails the test if the server logged a traceback while it ran.

    Use with ``pytestmark = pytest.mark.usefixtures("no_tracebacks")``.
    """
    yield
    assert not tracebacks.records, tracebacks.describe()
