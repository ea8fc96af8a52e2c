"""A real ``redis-server`` for the Redis store tests, and clients for it.

One server per test session (starting it takes ~0.1 s), on 127.0.0.1 and a
free port, with persistence off. The function-scoped ``redis_server`` fixture
makes sure it runs (a fault test may have stopped it) and empties it with
``FLUSHALL`` before every test, so tests can use fixed key prefixes.

Register the fixtures in ``conftest.py`` (they are named ``redis_server`` and
``redis_server_process``)::

    from _redis_server import redis_server_fixture, redis_server_process_fixture  # noqa: F401

Tests skip when no ``redis-server`` is installed (``.ci/run`` installs one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio
import trio.testing

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import coredis

__all__ = [
    "RedisServer",
    "redis_client",
    "redis_server_fixture",
    "redis_server_process_fixture",
]

#: Client settings that make a dead or hung server fail calls quickly.
CLIENT_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 1.0,  # a refused connection fails at once; a black hole after 1 s
    "stream_timeout": 1.0,  # a hung server (SIGSTOP) fails a command after 1 s
}

_STARTUP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int, *parts: bytes, timeout: float = 1.0) -> bytes:
    """Send one RESP command over a fresh socket and return the first reply line."""
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


class RedisServer:
    """One ``redis-server`` child process on a fixed port; restartable for fault tests.

    Attributes:
        host: Always ``127.0.0.1``.
        port: The TCP port, kept across :meth:`stop` and :meth:`start`.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int:
        """The server's process id (raises when it is not running)."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (on the same port as before) and wait until it answers PING."""
        if self.running:
            return
        for attempt in range(3):
            self._process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    self.host,
                    "--protected-mode",
                    "yes",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    "--logfile",
                    str(self.workdir / "redis.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self.stop()
            if attempt == 0:
                continue
            self.port = _free_port()  # someone else took it
        log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                return False
            with contextlib.suppress(OSError):
                if _command(self.port, b"PING") == b"+PONG":
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Kill the server by its pid (SIGKILL: it dies as a crashed server would)."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        self._paused = False

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if self._paused:
            os.kill(self.pid, signal.SIGCONT)
            self._paused = False

    def flushall(self) -> None:
        reply = _command(self.port, b"FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")


@pytest.fixture(scope="session", name="redis_server_process")
def redis_server_process_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """The session's ``redis-server``; killed by its pid when the session ends."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it (apt redis-server)")
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.stop()


@pytest.fixture(name="redis_server")
def redis_server_fixture(redis_server_process: RedisServer) -> RedisServer:
    """The running, empty ``redis-server`` (restarted if a test stopped it)."""
    redis_server_process.resume()
    redis_server_process.start()
    redis_server_process.flushall()
    return redis_server_process


async def redis_client(
    nursery: trio.Nursery, server: RedisServer, **options: Any
) -> coredis.Redis[bytes]:
    """An open client of *server*, alive until *nursery* is cancelled.

    Uses :data:`CLIENT_TIMEOUTS` (overridable through *options*) and a retry
    policy that retries a lost connection once (so the first command after a
    server restart reconnects) but never a timeout (so a hung server fails a
    command after ``stream_timeout``, not after several of them).

    On trio's mock clock (``autojump_clock``) the timeouts are left out:
    waiting for Redis' real reply looks idle to trio, so the clock would jump
    to the timeout and every command would time out at once.
    """
    import coredis
    from coredis.retry import ConstantRetryPolicy

    mock_clock = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    settings: dict[str, Any] = {
        **({} if mock_clock else CLIENT_TIMEOUTS),
        "retry_policy": ConstantRetryPolicy(
            (coredis.exceptions.ConnectionError,), retries=1, delay=0.05
        ),
        **options,
    }

    async def run(*, task_status: trio.TaskStatus[coredis.Redis[bytes]]) -> None:
        client = coredis.Redis(
            host=server.host, port=server.port, decode_responses=False, **settings
        )
        async with client:
            task_status.started(client)
            await trio.sleep_forever()

    return cast("coredis.Redis[bytes]", await nursery.start(run))
