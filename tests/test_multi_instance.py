"""Two server processes sharing one redis-server behave as one service.

A session created on the first instance is used on the second; an SSE stream
begun on the first is resumed on the second; the creation rate limit is one
budget across both; the official Python SDK client carries on when its
instance goes away; and a Redis outage degrades service without 500s or
hangs, then recovers without a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from _harness import messages
from _processes import (
    ServerProcess,
    SwitchableProxy,
    initialize,
    interrupt_logging_call,
    port_of,
    resume_stream,
    session_headers,
)
from conftest import INIT_HEADERS

if TYPE_CHECKING:
    from _redis_server import RedisServer

TARGET = "examples/conformance_server.py:server"


async def start_pair(redis: RedisServer, *extra: str) -> tuple[ServerProcess, ServerProcess]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    args = ("--redis", redis.url, "--store-prefix", prefix, "--store-timeout", "1", *extra)
    return await ServerProcess.start(TARGET, *args), await ServerProcess.start(TARGET, *args)


async def stop_all(*servers: ServerProcess) -> None:
    for server in servers:
        if server.process.returncode is None:
            assert await server.stop() == 0
        assert b"Traceback" not in server.stderr, server.stderr.decode()


async def test_sessions_streams_and_rate_limits_span_instances(redis_server: RedisServer) -> None:
    first, second = await start_pair(redis_server, "--rate-limit-per-client", "5/3600")
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, first.url)  # creation 1
            headers = session_headers(session_id)
            await http.post(
                first.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 6,
                    "method": "logging/setLevel",
                    "params": {"level": "info"},
                },
                headers=headers,
            )
            last_id = await interrupt_logging_call(first.url, headers, request_id=7)
            await trio.sleep(0.5)  # the call ends on the first instance, unobserved

            # The second instance restores the session (no creation: not charged) ...
            r = await http.post(
                second.url, json={"jsonrpc": "2.0", "id": 8, "method": "ping"}, headers=headers
            )
            assert r.status_code == 200, r.text
            # ... and resumes the stream begun on the first.
            replayed = await resume_stream(http, second.url, session_id, last_id)
            assert replayed[-1]["id"] == 7
            assert (
                replayed[-1]["result"]["content"][0]["text"]
                == "Tool with logging executed successfully"
            )
            assert [m["params"]["data"] for m in replayed[:-1]] == [
                "Tool processing data",
                "Tool execution completed",
            ]

            # One budget of 5 creations for this client across both instances (1 spent).
            statuses = []
            for url in (first.url, second.url, first.url, second.url, first.url):
                r = await http.post(
                    url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": "2025-11-25",
                            "capabilities": {},
                            "clientInfo": {"name": "x"},
                        },
                    },
                    headers=INIT_HEADERS,
                )
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) > 3500
            assert statuses == [200, 200, 200, 200, 429]

            # DELETE on the second removes the stored session for good.
            assert (await http.delete(second.url, headers=headers)).status_code == 200
            r = await http.post(
                second.url, json={"jsonrpc": "2.0", "id": 9, "method": "ping"}, headers=headers
            )
            assert r.status_code == 404
    finally:
        for server in (first, second):
            await server.kill()
    await stop_all(first, second)


# The SDK client's HTTP library abandons response generators when a connection
# breaks (here: on purpose); that is its business, not ours.
@pytest.mark.filterwarnings(r"ignore:Async generator 'httpx2\.:ResourceWarning")
@pytest.mark.filterwarnings(r"ignore:Async generator 'httpcore2\.:ResourceWarning")
async def test_the_official_client_carries_on_when_its_instance_goes_away(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    from mcp.client import Client

    first, second = await start_pair(redis_server)
    try:
        proxy = SwitchableProxy(port_of(first.url))
        proxy_port = await nursery.start(proxy.serve)
        url = f"http://127.0.0.1:{proxy_port}/mcp"
        with trio.fail_after(60):
            async with Client(url, mode="legacy") as client:
                result = await client.call_tool("test_simple_text", {})
                assert result.content[0].text == "This is a simple text response for testing."  # type: ignore[union-attr]
                # The first instance goes away; the balancer now sends everyone to the second.
                assert await first.stop() == 0
                proxy.target_port = port_of(second.url)
                result = await client.call_tool("test_tool_with_progress", {})
                assert not result.is_error
                prompt = await client.get_prompt(
                    "test_prompt_with_arguments", {"arg1": "a", "arg2": "b"}
                )
                assert "arg1='a'" in prompt.messages[0].content.text  # type: ignore[union-attr]
        assert await second.stop() == 0
        assert b"session restored" in second.stderr
    finally:
        for server in (first, second):
            await server.kill()
    assert b"Traceback" not in first.stderr + second.stderr


async def test_a_redis_outage_degrades_then_recovers(redis_server: RedisServer) -> None:
    first, second = await start_pair(redis_server, "--store-probe-after", "0.5")
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for outage in (redis_server.pause, redis_server.stop):
                stored = await initialize(http, first.url)  # in Redis, not on the second
                outage()  # frozen (every call hangs), then gone (connections refused)
                with trio.fail_after(8):
                    # New sessions are still served, degraded ...
                    fresh = await initialize(http, first.url)
                    r = await http.post(first.url, json=ping, headers=session_headers(fresh))
                    assert r.status_code == 200
                    # ... a restore that cannot reach the store is a 503, never a 500 or a hang.
                    r = await http.post(second.url, json=ping, headers=session_headers(stored))
                assert r.status_code == 503
                assert r.headers["retry-after"].isdigit()
                assert r.json()["error"]["code"] == -32000
                assert r.json()["id"] == 3
                if outage == redis_server.pause:
                    redis_server.resume()
                    # Back: the same instances restore without a restart.
                    with trio.fail_after(8):
                        r = await http.post(second.url, json=ping, headers=session_headers(stored))
                    assert r.status_code == 200, r.text
            redis_server.start()  # empty again (no persistence): new sessions store fine
            # Once the store counted as down, calls fail at once until the
            # pause (--store-probe-after) is over and a probe finds it back.
            await trio.sleep(0.6)
            with trio.fail_after(8):
                later = await initialize(http, first.url)
                r = await http.post(second.url, json=ping, headers=session_headers(later))
            assert r.status_code == 200, r.text
    finally:
        for server in (first, second):
            await server.kill()
    await stop_all(first, second)


# -- several Hypercorn workers on one port --------------------------------------------


async def _call_on_fresh_connections(url: str, session_id: str, count: int) -> list[str | int]:
    """*count* ``worker`` calls of one session, each on a new connection (so on any worker).

    A 200's entry is the PID of the worker that ran the call; anything else, its status.
    """
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "worker", "arguments": {}},
    }
    seen: list[str | int] = []
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=10, limits=no_reuse) as http:
        for _ in range(count):
            r = await http.post(url, json=call, headers=session_headers(session_id))
            if r.status_code != 200:
                assert r.json()["error"]["code"] == -32001, r.text  # session not found
                seen.append(r.status_code)
                continue
            [reply] = [m for m in messages(r) if "result" in m]
            seen.append(reply["result"]["content"][0]["text"])
    return seen


@pytest.mark.parametrize("stores", ["memory", "redis"])
async def test_hypercorn_workers_share_sessions_only_through_redis(
    redis_server: RedisServer, stores: str
) -> None:
    """``hypercorn -k trio -w 2`` of a LifespanApp: two processes accepting on one socket.

    In memory each worker has its own sessions (the other one answers 404);
    with Redis a session created on one worker is restored on the other.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if stores == "redis":
        env |= {"MCP_TEST_REDIS": redis_server.url, "MCP_TEST_PREFIX": uuid.uuid4().hex[:8]}
    command = [
        *(sys.executable, "-m", "hypercorn", "--worker-class", "trio", "--workers", "2"),
        *("--bind", f"fd://{listener.fileno()}", "_workers_app:app"),
    ]
    process = await trio.lowlevel.open_process(
        command,
        cwd=Path(__file__).parent,
        env=env,
        pass_fds=[listener.fileno()],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    listener.close()  # the workers hold it now
    try:
        with trio.fail_after(60):
            async with httpx.AsyncClient(timeout=10) as http:
                while True:  # until a worker accepts (they start in a second or two)
                    try:
                        session_id = await initialize(http, url)
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
            seen: list[str | int] = []
            # Each connection goes to whichever worker accepts it first: bounded, but
            # enough that both take some (both appeared within 20 in every trial).
            while len(seen) < 400 and len(set(seen)) < 2:
                seen += await _call_on_fresh_connections(url, session_id, 20)
    finally:
        process.send_signal(signal.SIGTERM)  # to Hypercorn's parent: it stops the workers
        with trio.fail_after(30):
            assert process.stderr is not None
            stderr = b"".join([chunk async for chunk in process.stderr])
            code = await process.wait()
    assert code == 0, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    pids = {entry for entry in seen if isinstance(entry, str)}
    assert str(process.pid) not in pids  # the parent only supervises
    if stores == "memory":
        assert len(pids) == 1, seen  # only the worker that created the session has it
        assert 404 in seen, seen
    else:
        assert len(pids) == 2, seen  # restored on the other worker: every call answered
        assert all(isinstance(entry, str) for entry in seen), seen
