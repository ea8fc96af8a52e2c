"""Changes cross instances: two apps, one real ``redis-server``, ``RedisBroadcast`` between.

A ``notify_all`` or ``notify_resource_updated`` on app A reaches the listen
streams (and the session-era GET streams) of app B, tagged with B's own
subscription ids, exactly once; A's own receivers are served by A, not by
the echo. The reader survives a Redis restart, and a broadcast while Redis
is down still serves the local receivers, quickly.
"""

from __future__ import annotations

import gc
import json
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from _harness import Harness, Probe, wait_until
from _redis_server import redis_client
from test_listen import listen_body, listening, make_server, next_message
from trio_mcp_sessions import RedisBroadcast, StreamableHTTPApp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from _redis_server import RedisServer

SUB = "io.modelcontextprotocol/subscriptionId"

# coredis 6.9 leaks the anyio memory streams of a connection whose connect
# failed (see test_store_redis.py); each test collects them before it ends.
pytestmark = pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")

Instances = tuple[Harness, Harness, RedisBroadcast, RedisBroadcast]


@asynccontextmanager
async def instances(
    http: httpx.AsyncClient, redis: RedisServer, **relay_options: Any
) -> AsyncIterator[Instances]:
    """Two apps (instances A and B) on Hypercorn, each with its own client of *redis*.

    Everything is stopped, and coredis' leaked connections collected, before
    the block's test ends (not in a later test).
    """
    relays: list[RedisBroadcast] = []
    harnesses: list[Harness] = []
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            client = await redis_client(nursery, redis)
            relay = RedisBroadcast(client, prefix="listen-test", **relay_options)
            app = StreamableHTTPApp(make_server(), relay=relay)
            config = Config()
            config.bind = ["127.0.0.1:0"]
            config.accesslog = None
            config.graceful_timeout = 0.5
            serve = partial(
                hypercorn_serve,
                app,  # type: ignore[arg-type]
                config,
                shutdown_trigger=trio.sleep_forever,
            )
            binds = await nursery.start(serve)
            harnesses.append(Harness(app, f"{binds[0]}{app.path}", http, Probe()))
            relays.append(relay)
        await wait_until(lambda: all(r.statistics().connected for r in relays))
        yield harnesses[0], harnesses[1], relays[0], relays[1]
        nursery.cancel_scope.cancel()
    gc.collect()


async def test_a_change_on_one_instance_reaches_listeners_on_the_other(
    http: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    async with instances(http, redis_server) as (a, b, relay_a, relay_b):
        await crossing(a, b, relay_a, relay_b)


async def crossing(
    a: Harness, b: Harness, relay_a: RedisBroadcast, relay_b: RedisBroadcast
) -> None:
    session_id = await b.initialize()
    subscribe = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "resources/subscribe",
        "params": {"uri": "mem://a"},
    }
    assert (await b.post(subscribe, session_id, "2025-11-25")).status_code == 200
    on_b = listen_body("b", toolsListChanged=True, resourceSubscriptions=["mem://a"])
    on_a = listen_body("a", toolsListChanged=True)
    async with (
        listening(b, on_b) as (_, listen_b),
        listening(a, on_a) as (_, listen_a),
        b.stream("GET", b.get_headers(session_id)) as (_, get_b),
    ):
        await next_message(listen_b)
        await next_message(listen_a)
        await get_b.priming()
        # A's count is A's own receivers; B's arrive through Redis.
        assert await a.manager.notify_all("notifications/tools/list_changed", {"n": 1}) == 1
        assert await a.manager.notify_resource_updated("mem://a") == 0
        assert await a.manager.notify_all("notifications/prompts/list_changed") == 0
        await wait_until(lambda: relay_b.statistics().received == 3)
        assert await b.manager.notify_all("notifications/tools/list_changed", {"n": 2}) == 2
        heard_b = [await next_message(listen_b) for _ in range(3)]
        heard_a = [await next_message(listen_a) for _ in range(2)]
        got_b = [await next_message(get_b) for _ in range(4)]
    assert heard_b == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"n": 1, "_meta": {SUB: "b"}},
        },
        {
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": {"uri": "mem://a", "_meta": {SUB: "b"}},
        },
        {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"n": 2, "_meta": {SUB: "b"}},
        },
    ]
    # A heard its own change once (no echo) and B's once.
    assert [m["params"] for m in heard_a] == [
        {"n": 1, "_meta": {SUB: "a"}},
        {"n": 2, "_meta": {SUB: "a"}},
    ]
    # B's session-era client hears A's changes as it hears B's own.
    assert [m["method"] for m in got_b] == [
        "notifications/tools/list_changed",
        "notifications/resources/updated",
        "notifications/prompts/list_changed",
        "notifications/tools/list_changed",
    ]
    assert (relay_a.statistics().published, relay_b.statistics().received) == (3, 3)
    assert relay_a.statistics().received == 1
    assert a.stats().created == 0


async def test_the_relay_survives_a_redis_restart_and_never_fails_a_broadcast(
    http: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    async with instances(http, redis_server, max_reconnect_delay=0.3) as (a, b, relay_a, relay_b):
        async with listening(a, listen_body(1, toolsListChanged=True)) as (_, listen_a):
            await next_message(listen_a)
            redis_server.stop()
            await wait_until(lambda: not relay_b.statistics().connected)
            # Redis is gone: the local listener is served, the publish fails fast.
            with trio.fail_after(3):
                assert await a.manager.notify_all("notifications/tools/list_changed") == 1
            assert (await next_message(listen_a))["method"] == "notifications/tools/list_changed"
            assert relay_a.statistics().publish_failures == 1
            redis_server.start()
            await wait_until(
                lambda: relay_a.statistics().connected and relay_b.statistics().connected
            )
        assert relay_b.statistics().reconnects >= 1
        async with listening(b, listen_body(2, toolsListChanged=True)) as (_, listen_b):
            await next_message(listen_b)
            await a.manager.notify_all("notifications/tools/list_changed", {"after": "restart"})
            heard = await next_message(listen_b)
        assert heard["params"] == {"after": "restart", "_meta": {SUB: 2}}


async def test_publishes_to_a_dead_redis_open_a_circuit_and_then_fail_at_once(
    http: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    async with instances(http, redis_server) as (a, _, relay_a, _):
        redis_server.stop()
        try:
            for _ in range(4):
                with trio.fail_after(3):
                    await a.manager.notify_all("notifications/tools/list_changed")
            stats = relay_a.statistics()
            assert (stats.publish_failures, stats.published, stats.circuit) == (4, 0, "open")
        finally:
            redis_server.start()


async def test_oversized_and_foreign_messages_are_counted_not_delivered(
    http: httpx.AsyncClient, nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    async with instances(http, redis_server, max_message_bytes=512) as (a, b, relay_a, relay_b):
        async with listening(b, listen_body(1, toolsListChanged=True)) as (_, listen_b):
            await next_message(listen_b)
            big: dict[str, object] = {"p": "x" * 600}
            assert await a.manager.notify_all("notifications/tools/list_changed", big) == 0
            assert relay_a.statistics().too_large == 1
            junk = (b"not json", b"[1]", json.dumps({"o": "x", "m": 5}).encode(), b"x" * 600)
            for message in junk:
                await client.publish(relay_b.channel, message)
            await a.manager.notify_all("notifications/tools/list_changed", {"ok": True})
            heard = await next_message(listen_b)
        assert heard["params"] == {"ok": True, "_meta": {SUB: 1}}
        await wait_until(lambda: relay_b.statistics().ignored == 4)
        assert relay_b.statistics().received == 1


async def test_redis_on_the_command_line_relays_changes(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    import contextlib

    from trio_mcp_sessions._cli import _open_stores, _parser

    args = _parser().parse_args(["serve", "m:s", "--redis", redis_server.url])
    async with contextlib.AsyncExitStack() as stack:
        stores = await _open_stores(args, stack, nursery)
    relay = stores.get("relay")
    assert isinstance(relay, RedisBroadcast)
    assert relay.channel == b"mcp:changes"
