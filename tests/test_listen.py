"""``subscriptions/listen`` (2026-07-28) over real HTTP: ack, tags, filter, bounds, drain.

The server's broadcasts (``notify_all``, ``notify_resource_updated``) reach
session-era GET streams and listen streams alike; a listen stream is acked
first, tagged throughout, filtered, bounded in number and in backlog, and
ended gracefully with a ``SubscriptionsListenResult`` when the server drains.
No session is ever created for it.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from _harness import SSE_ACCEPT, Harness, Probe, SseReader, assert_error, parse_sse, wait_until
from trio_mcp_sessions import ListenLimits, McpServer, StreamableHTTPApp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from conftest import StartServer

MODERN = "2026-07-28"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
SERVER_ERROR = -32000
INVALID_PARAMS = -32602


def make_server(*, prompts: bool = True) -> McpServer:
    server = McpServer("listen-tests", "1.0")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text.

        Args:
            text: What to return.
        """
        return text

    @server.resource("mem://a", name="a")
    def a() -> str:
        return "a"

    if prompts:

        @server.prompt()
        def greet() -> str:
            """Say hello."""
            return "hello"

    return server


def modern_meta() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }


def listen_body(request_id: int | str = 7, **notifications: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "subscriptions/listen",
        "params": {"_meta": modern_meta(), "notifications": notifications},
    }


def modern_headers(method: str, *, accept: str = SSE_ACCEPT) -> dict[str, str]:
    return {
        "accept": accept,
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
    }


async def start(start_server: StartServer, http: httpx.AsyncClient, **options: Any) -> Harness:
    app = StreamableHTTPApp(make_server(prompts=options.pop("prompts", True)), **options)
    return Harness(app, await start_server(app), http, Probe())


@asynccontextmanager
async def listening(
    h: Harness, body: dict[str, Any]
) -> AsyncIterator[tuple[httpx.Response, SseReader]]:
    headers = modern_headers("subscriptions/listen")
    async with h.stream("POST", headers, body) as (r, sse):
        yield r, sse


async def next_message(sse: SseReader) -> Any:
    with trio.fail_after(5):
        event = await sse.next()
    assert event is not None, "the stream ended"
    return event.json()


async def test_the_ack_comes_first_with_the_honoured_filter_and_the_subscription_id(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http, prompts=False)
    body = listen_body(
        "sub-1",
        toolsListChanged=True,
        promptsListChanged=True,  # no prompts here: not honoured
        resourcesListChanged=False,
        resourceSubscriptions=["mem://a", "mem://b", "mem://a"],
        futureKind=True,  # unknown: ignored
    )
    async with listening(h, body) as (r, sse):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        assert "mcp-session-id" not in r.headers
        ack = await next_message(sse)
    assert ack == {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {
            "_meta": {SUBSCRIPTION_ID: "sub-1"},
            "notifications": {
                "toolsListChanged": True,
                "resourceSubscriptions": ["mem://a", "mem://b"],
            },
        },
    }
    assert h.stats().created == 0  # no session, ever


async def test_every_notification_is_tagged_and_only_what_was_asked_for_arrives(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http)
    body = listen_body(3, toolsListChanged=True, resourceSubscriptions=["mem://a"])
    async with listening(h, body) as (_, sse):
        await next_message(sse)  # the ack
        manager = h.manager
        assert await manager.notify_all("notifications/prompts/list_changed") == 0
        assert await manager.notify_all("notifications/message", {"level": "info"}) == 0
        assert await manager.notify_all("notifications/progress", {"progress": 1}) == 0
        assert await manager.notify_resource_updated("mem://b") == 0
        assert await manager.notify_all("notifications/tools/list_changed") == 1
        assert await manager.notify_resource_updated("mem://a") == 1
        tools = await next_message(sse)
        updated = await next_message(sse)
    assert tools == {
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
        "params": {"_meta": {SUBSCRIPTION_ID: 3}},
    }
    assert updated == {
        "jsonrpc": "2.0",
        "method": "notifications/resources/updated",
        "params": {"uri": "mem://a", "_meta": {SUBSCRIPTION_ID: 3}},
    }
    stats = h.app.sessionless.listen.statistics()  # type: ignore[union-attr]
    assert (stats.opened, stats.delivered) == (1, 2)
    assert h.stats().created == 0


async def test_concurrent_streams_each_carry_their_own_id(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http)
    async with (
        listening(h, listen_body(1, toolsListChanged=True)) as (_, first),
        listening(h, listen_body(2, toolsListChanged=True, promptsListChanged=True)) as (_, second),
    ):
        await next_message(first)
        await next_message(second)
        assert await h.manager.notify_all("notifications/tools/list_changed", {"x": 1}) == 2
        assert await h.manager.notify_all("notifications/prompts/list_changed") == 1
        a = await next_message(first)
        b1, b2 = await next_message(second), await next_message(second)
    assert a["params"] == {"x": 1, "_meta": {SUBSCRIPTION_ID: 1}}
    assert b1["params"] == {"x": 1, "_meta": {SUBSCRIPTION_ID: 2}}
    assert b2 == {
        "jsonrpc": "2.0",
        "method": "notifications/prompts/list_changed",
        "params": {"_meta": {SUBSCRIPTION_ID: 2}},
    }


async def test_a_broadcast_reaches_session_clients_and_listeners_alike(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http)
    session_id = await h.initialize()
    subscribe = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "resources/subscribe",
        "params": {"uri": "mem://a"},
    }
    assert (await h.post(subscribe, session_id, "2025-11-25")).status_code == 200
    body = listen_body(9, toolsListChanged=True, resourceSubscriptions=["mem://a"])
    async with (
        h.stream("GET", h.get_headers(session_id)) as (_, get),
        listening(h, body) as (_, listen),
    ):
        await get.priming()
        await next_message(listen)
        assert await h.manager.notify_all("notifications/tools/list_changed") == 2
        assert await h.manager.notify_resource_updated("mem://a") == 2
        got = [await next_message(get), await next_message(get)]
        heard = [await next_message(listen), await next_message(listen)]
    assert [m["method"] for m in got] == [
        "notifications/tools/list_changed",
        "notifications/resources/updated",
    ]
    assert all("_meta" not in m.get("params", {}) for m in got)  # not a listen stream
    assert [m["method"] for m in heard] == [m["method"] for m in got]
    assert all(m["params"]["_meta"] == {SUBSCRIPTION_ID: 9} for m in heard)


async def test_over_the_cap_a_listen_is_refused_before_any_ack(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http, listen_limits=ListenLimits(max_streams=2))
    listen = h.app.sessionless.listen  # type: ignore[union-attr]
    async with listening(h, listen_body(1, toolsListChanged=True)) as (_, first):
        await next_message(first)
        async with listening(h, listen_body(2, toolsListChanged=True)) as (_, second):
            await next_message(second)
            r = await h.post(listen_body(3), headers=modern_headers("subscriptions/listen"))
            body = assert_error(r, 503, SERVER_ERROR, request_id=3)
            assert "at most 2" in body["error"]["message"]
            assert r.headers["retry-after"] == "5"
            assert listen.statistics().refused == 1
        # A client that leaves frees its slot.
        await wait_until(lambda: listen.statistics().open_streams == 1)
        async with listening(h, listen_body(4, toolsListChanged=True)) as (r, third):
            assert r.status_code == 200
            assert (await next_message(third))["params"]["_meta"] == {SUBSCRIPTION_ID: 4}
    await wait_until(lambda: listen.statistics().open_streams == 0)


async def test_a_consumer_that_stops_reading_is_ended_gracefully_and_counted(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    limits = ListenLimits(max_buffered_events=4, max_buffered_bytes=64 * 1024)
    h = await start(start_server, http, listen_limits=limits)
    listen = h.app.sessionless.listen  # type: ignore[union-attr]
    padding = "x" * 32 * 1024
    async with http.stream(
        "POST",
        h.url,
        headers=modern_headers("subscriptions/listen"),
        content=json.dumps(listen_body(11, toolsListChanged=True)).encode(),
    ) as r:
        chunks = r.aiter_bytes()
        first = await chunks.__anext__()  # the ack; then the client reads nothing
        assert b"notifications/subscriptions/acknowledged" in first
        # Until the socket buffers are full and the stream's backlog with them:
        # bounded by count (at most ~64 MiB sent) and by time.
        with trio.fail_after(20):
            for _ in range(2000):
                await h.manager.notify_all("notifications/tools/list_changed", {"p": padding})
                if listen.statistics().ended_slow:
                    break
                await trio.sleep(0.001)
        stats = listen.statistics()
        assert (stats.ended_slow, stats.closed_by_server, stats.open_streams) == (1, 1, 0)
        # Nothing more is put on it; what it has not read, then the result, arrives.
        assert await h.manager.notify_all("notifications/tools/list_changed") == 0
        rest = first + b"".join([chunk async for chunk in chunks])
    frames = [e.json() for e in parse_sse(rest.decode()) if e.data]
    assert frames[0]["method"] == "notifications/subscriptions/acknowledged"
    assert frames[-1]["id"] == 11
    assert frames[-1]["result"]["resultType"] == "complete"
    assert frames[-1]["result"]["_meta"][SUBSCRIPTION_ID] == 11
    assert all(f["params"]["_meta"] == {SUBSCRIPTION_ID: 11} for f in frames[:-1])


async def test_draining_ends_listen_streams_with_a_result_and_refuses_new_ones(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http)
    async with listening(h, listen_body("s", toolsListChanged=True)) as (_, sse):
        await next_message(sse)
        assert await h.manager.notify_all("notifications/tools/list_changed") == 1
        h.app.begin_drain()
        with trio.fail_after(5):
            rest = await sse.rest()
    frames = [e.json() for e in rest]
    assert frames[0]["method"] == "notifications/tools/list_changed"
    assert frames[-1] == {
        "jsonrpc": "2.0",
        "id": "s",
        "result": {
            "resultType": "complete",
            "_meta": {
                SUBSCRIPTION_ID: "s",
                "io.modelcontextprotocol/serverInfo": {"name": "listen-tests", "version": "1.0"},
            },
        },
    }
    r = await h.post(listen_body(2), headers=modern_headers("subscriptions/listen"))
    assert_error(r, 503, SERVER_ERROR, request_id=2)
    h.app.finish_drain()
    stats = h.app.sessionless.listen.statistics()  # type: ignore[union-attr]
    assert (stats.open_streams, stats.closed_by_server) == (0, 1)
    assert h.stats().created == 0


async def test_listen_needs_an_event_stream_accept_and_a_valid_filter(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http, reply_mode="json")  # JSON would do for other requests
    headers = modern_headers("subscriptions/listen", accept="application/json")
    r = await h.post(listen_body(1, toolsListChanged=True), headers=headers)
    assert (
        "text/event-stream" in assert_error(r, 406, SERVER_ERROR, request_id=1)["error"]["message"]
    )
    for notifications in (None, {"toolsListChanged": "yes"}, {"resourceSubscriptions": "x"}):
        body = listen_body(2)
        body["params"]["notifications"] = notifications
        r = await h.post(body, headers=modern_headers("subscriptions/listen"))
        assert_error(r, 400, INVALID_PARAMS, request_id=2)
    many = listen_body(3, resourceSubscriptions=[f"mem://{i}" for i in range(101)])
    r = await h.post(many, headers=modern_headers("subscriptions/listen"))
    assert assert_error(r, 400, INVALID_PARAMS, request_id=3)["error"]["data"] == {"max_uris": 100}
    stats = h.app.sessionless.listen.statistics()  # type: ignore[union-attr]
    assert (stats.opened, stats.open_streams) == (0, 0)
    assert h.stats().created == 0


async def test_listen_is_a_stream_in_json_reply_mode_too(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http, reply_mode="json")
    async with listening(h, listen_body(1, toolsListChanged=True)) as (r, sse):
        assert r.headers["content-type"].startswith("text/event-stream")
        assert (await next_message(sse))["method"] == "notifications/subscriptions/acknowledged"


async def test_the_listen_bounds_and_counts_are_exported_as_metrics(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(
        start_server, http, metrics_path="/metrics", listen_limits=ListenLimits(max_streams=1)
    )
    metrics_url = h.url.removesuffix("/mcp") + "/metrics"
    async with listening(h, listen_body(1, toolsListChanged=True)) as (_, sse):
        await next_message(sse)
        r = await h.post(listen_body(2), headers=modern_headers("subscriptions/listen"))
        assert_error(r, 503, SERVER_ERROR, request_id=2)
        text = (await http.get(metrics_url)).text
    for line in (
        "mcp_listen_streams 1.0",
        "mcp_listen_streams_max 1.0",
        "mcp_listen_opened_total 1.0",
        "mcp_listen_refused_total 1.0",
        "mcp_listen_ended_slow_total 0.0",
    ):
        assert line in text.splitlines(), line


async def test_the_cap_is_exact_under_concurrent_listens(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await start(start_server, http, listen_limits=ListenLimits(max_streams=5))
    listen = h.app.sessionless.listen  # type: ignore[union-attr]
    statuses: list[int] = []
    all_in = trio.Event()

    async def one(request_id: int) -> None:
        async with listening(h, listen_body(request_id, toolsListChanged=True)) as (r, sse):
            statuses.append(r.status_code)
            if r.status_code == 200:
                await next_message(sse)
                await all_in.wait()  # hold the slot until every request was answered

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for request_id in range(20):
                nursery.start_soon(one, request_id)
            await wait_until(lambda: len(statuses) == 20)
            assert listen.statistics().open_streams == 5
            all_in.set()
    assert sorted(statuses) == [200] * 5 + [503] * 15
    stats = listen.statistics()
    assert (stats.opened, stats.refused) == (5, 15)
    await wait_until(lambda: listen.statistics().open_streams == 0)
