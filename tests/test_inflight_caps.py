"""The exact in-flight caps: global and per client, taken before the body, in both eras."""

from __future__ import annotations

import contextlib
import json
from functools import partial
from typing import TYPE_CHECKING, Any

import h11
import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _harness import wait_until
from trio_mcp_sessions import (
    CallLimits,
    InflightStatistics,
    McpServer,
    ServerBusy,
    ServerOptions,
    StreamableHTTPApp,
    TooManyInFlight,
)
from trio_mcp_sessions._cli import _parser, options_from
from trio_mcp_sessions._manager._inflight import InflightLimiter, InflightSlot
from trio_mcp_sessions.testing import McpTestClient, open_test_client

if TYPE_CHECKING:
    from conftest import StartServer

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


# -- the limiter, sans HTTP ---------------------------------------------------------------


async def test_the_global_and_per_client_caps_refuse_at_once() -> None:
    limiter = InflightLimiter(3, max_per_client=2)
    a1, a2 = limiter.acquire_nowait("a"), limiter.acquire_nowait("a")
    with pytest.raises(TooManyInFlight, match="already has 2 requests in flight"):
        limiter.acquire_nowait("a")
    b1 = limiter.acquire_nowait("b")
    with pytest.raises(ServerBusy, match="3 requests in flight"):
        limiter.acquire_nowait("c")
    stats = limiter.statistics()
    assert (stats.in_flight, stats.clients, stats.refused_busy, stats.refused_per_client) == (
        3,
        2,
        1,
        1,
    )
    a1.release()
    a1.release()  # idempotent: the response ending and the client leaving both release
    assert limiter.statistics().in_flight == 2
    limiter.acquire_nowait(None).release()  # no key: only the global cap applies
    a2.release()
    b1.release()
    stats = limiter.statistics()
    assert (stats.in_flight, stats.clients, stats.admitted) == (0, 0, 4)


async def test_a_batch_takes_a_slot_per_request_or_none() -> None:
    limiter = InflightLimiter(4, max_per_client=3)
    slot = limiter.acquire_nowait("a")
    with pytest.raises(TooManyInFlight):
        slot.extend_nowait(3)  # 4 for "a" is over its 3
    assert (slot.held, limiter.statistics().in_flight) == (1, 1)
    slot.extend_nowait(2)
    assert (slot.held, limiter.statistics().in_flight) == (3, 3)
    other = limiter.acquire_nowait("b")
    with pytest.raises(ServerBusy):
        other.extend_nowait(1)
    slot.release()
    other.release()
    assert limiter.statistics().in_flight == 0


async def test_the_line_waits_its_timeout_then_refuses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = InflightLimiter(1, queue_timeout=2.0, max_queued=1)
    first = await limiter.acquire(None)
    outcomes: list[str] = []

    async def wait_in_line() -> None:
        start = trio.current_time()
        try:
            slot = await limiter.acquire(None)
        except ServerBusy:
            outcomes.append(f"refused after {trio.current_time() - start:.1f}")
        else:
            outcomes.append(f"admitted after {trio.current_time() - start:.1f}")
            slot.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_in_line)
        await trio.testing.wait_all_tasks_blocked()
        assert limiter.statistics().queued == 1
        with pytest.raises(ServerBusy):  # the line holds one
            await limiter.acquire(None)
    assert outcomes == ["refused after 2.0"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_in_line)
        await trio.sleep(1.5)
        first.release()
    assert outcomes[-1] == "admitted after 1.5"
    stats = limiter.statistics()
    assert (stats.in_flight, stats.queued, stats.queue_timeouts, stats.refused_busy) == (0, 0, 1, 2)


async def test_a_cancelled_wait_in_line_holds_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = InflightLimiter(1, max_per_client=5, queue_timeout=10.0, max_queued=4)
    first = limiter.acquire_nowait("a")
    with trio.move_on_after(1):
        await limiter.acquire("a")
    first.release()
    stats = limiter.statistics()
    assert (stats.in_flight, stats.queued, stats.clients) == (0, 0, 0)


# -- the model: never over a cap, no slot leaked ------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("take"), st.sampled_from(["a", "b", "c", None])),
        st.tuples(st.just("wait"), st.sampled_from(["a", "b", None])),
        st.tuples(st.just("extend"), st.integers(0, 20), st.integers(1, 3)),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=_OPS,
    cap=st.integers(1, 4),
    per_client=st.one_of(st.none(), st.integers(1, 3)),
    queued=st.integers(0, 2),
)
def test_no_interleaving_goes_over_a_cap_or_leaks_a_slot(
    ops: list[tuple[Any, ...]], cap: int, per_client: int | None, queued: int
) -> None:
    """Admissions, waits in line, batches, completions, cancellations and timeouts, any order."""

    async def main() -> None:
        limiter = InflightLimiter(
            cap, max_per_client=per_client, queue_timeout=2.0 if queued else 0.0, max_queued=queued
        )
        held: list[tuple[str | None, InflightSlot]] = []
        waiters: list[trio.CancelScope] = []

        def check() -> None:
            stats = limiter.statistics()
            tokens = sum(slot.held for _, slot in held)
            assert stats.in_flight == tokens <= cap
            if per_client is not None:
                for key in {key for key, _ in held if key is not None}:
                    assert sum(s.held for k, s in held if k == key) <= per_client
            assert stats.queued <= queued

        async def wait(key: str | None, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                try:
                    slot = await limiter.acquire(key)
                except (ServerBusy, TooManyInFlight):
                    return
                held.append((key, slot))

        async with trio.open_nursery() as nursery:
            for op in ops:
                kind = op[0]
                if kind == "take":
                    with contextlib.suppress(ServerBusy, TooManyInFlight):
                        held.append((op[1], limiter.acquire_nowait(op[1])))
                elif kind == "wait":
                    waiters.append(await nursery.start(wait, op[1]))
                elif kind == "extend" and held:
                    _, slot = held[op[1] % len(held)]
                    before = slot.held
                    try:
                        slot.extend_nowait(op[2])
                    except (ServerBusy, TooManyInFlight):
                        assert slot.held == before  # all or nothing
                elif kind == "release" and held:
                    _, slot = held.pop(op[1] % len(held))
                    slot.release()
                elif kind == "cancel" and waiters:
                    waiters.pop(op[1] % len(waiters)).cancel()
                elif kind == "sleep":
                    await trio.sleep(op[1])
                await trio.testing.wait_all_tasks_blocked()
                check()
            for scope in waiters:
                scope.cancel()
        for _, slot in held:
            slot.release()
        stats = limiter.statistics()
        assert (stats.in_flight, stats.queued, stats.clients) == (0, 0, 0)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- options and the command line ---------------------------------------------------------


def test_the_caps_are_validated() -> None:
    with pytest.raises(ValueError, match="max_inflight must be at least 1"):
        CallLimits(max_inflight=0)
    with pytest.raises(TypeError, match="max_inflight_per_client must be an int"):
        CallLimits(max_inflight_per_client=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs max_inflight_queued"):
        CallLimits(inflight_queue_timeout=1.0)
    with pytest.raises(ValueError, match="finite"):
        CallLimits(inflight_queue_timeout=float("inf"), max_inflight_queued=1)
    limits = CallLimits()
    assert (limits.max_inflight, limits.max_inflight_per_client) == (512, None)


def test_the_command_line_sets_the_caps() -> None:
    args = _parser().parse_args(
        [
            "serve",
            "x:server",
            "--max-inflight",
            "20",
            "--max-inflight-per-client",
            "4",
            "--inflight-queue",
            "8",
            "--inflight-queue-timeout",
            "0.5",
            "--max-inflight-discover",
            "8",
        ]
    )
    limits = options_from(args).call_limits
    assert (limits.max_inflight, limits.max_inflight_per_client) == (20, 4)
    assert (limits.max_inflight_queued, limits.inflight_queue_timeout) == (8, 0.5)
    assert limits.max_inflight_discover == 8


# -- over HTTP ----------------------------------------------------------------------------


def slow_server(running: list[int], peak: list[int]) -> McpServer:
    server = McpServer("inflight")

    @server.tool()
    async def slow(seconds: float = 2.0) -> str:
        """Sleep, counting how many run at once."""
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            await trio.sleep(seconds)
        finally:
            running[0] -= 1
        return "done"

    return server


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
    }
    if name is not None:
        headers["mcp-name"] = name
    return headers


def modern_body(request_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": method,
            "params": {**(params or {}), "_meta": META},
        }
    ).encode()


async def occupy(
    nursery: trio.Nursery, http: httpx.AsyncClient, url: str, running: list[int]
) -> None:
    """Start a 1-second modern call of the slow tool in *nursery*; return once the tool runs."""
    body = modern_body(1, "tools/call", {"name": "slow", "arguments": {"seconds": 1.0}})
    headers = modern_headers("tools/call", "slow")
    nursery.start_soon(partial(http.post, url, content=body, headers=headers))
    while running[0] == 0:  # noqa: ASYNC110 - the handler's own counter
        await trio.sleep(0.01)


async def test_200_slow_calls_against_a_cap_of_20(
    start_server: StartServer, autojump_clock: trio.testing.MockClock
) -> None:
    """The issue's check: 20 run, 180 get 503 + Retry-After at once, discover answers throughout."""
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=20)
    app = StreamableHTTPApp(slow_server(running, peak), options=ServerOptions(call_limits=limits))
    # A burst of 200 connects: over Hypercorn's backlog of 100 the kernel drops SYNs
    # and the client retries a second later (what our serve() avoids with its own).
    url = await start_server(app, backlog=1024)
    outcomes: list[tuple[int, float, dict[str, str], dict[str, Any]]] = []
    probes: list[int] = []
    calls_done = trio.Event()
    pool = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(limits=pool, timeout=30) as http:

        async def call(index: int) -> None:
            start = trio.current_time()
            response = await http.post(
                url,
                content=modern_body(index, "tools/call", {"name": "slow", "arguments": {}}),
                headers=modern_headers("tools/call", "slow"),
            )
            outcomes.append(
                (
                    response.status_code,
                    trio.current_time() - start,
                    dict(response.headers),
                    response.json(),
                )
            )

        async def probe() -> None:
            while not calls_done.is_set():
                response = await http.post(
                    url,
                    content=modern_body(0, "server/discover"),
                    headers=modern_headers("server/discover"),
                )
                probes.append(response.status_code)
                await trio.sleep(0.1)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                async with trio.open_nursery() as calls:
                    for index in range(1, 201):
                        calls.start_soon(call, index)
                calls_done.set()
    assert len(outcomes) == 200  # no connection errors: every call got an answer
    answered = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] != 200]
    assert peak[0] == 20 == len(answered)
    assert all(o[3]["result"]["content"][0]["text"] == "done" for o in answered)
    for status, elapsed, headers, body in refused:
        assert status == 503
        assert elapsed < 1.0
        assert int(headers["retry-after"]) >= 1
        assert body["error"]["code"] == -32000
        assert "requests in flight" in body["error"]["message"]
    assert len(probes) >= 10
    assert set(probes) == {200}
    await wait_until(lambda: _inflight(app).in_flight == 0)
    stats = _inflight(app)
    assert (stats.in_flight, stats.refused_busy, stats.admitted) == (0, 180, 20)


async def test_a_refused_post_is_answered_before_its_body(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    """Over the cap the answer comes before the body: a 3 MiB upload costs its headers."""
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=1)
    app = StreamableHTTPApp(slow_server(running, peak), options=ServerOptions(call_limits=limits))
    url = await start_server(app)
    port = int(url.split(":")[2].split("/")[0])
    big = b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"x": "'
    big += b"y" * (3 * 1024 * 1024) + b'"}}'
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await occupy(nursery, http, url, running)
            # A plain HTTP/1.1 client (h11) that announces 3 MiB and sends 1 KiB: the
            # answer comes without the rest, then the connection ends (Hypercorn does
            # not read a body the app left), and the server goes on serving.
            for _ in range(3):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                client = h11.Connection(h11.CLIENT)
                headers = [
                    ("host", f"127.0.0.1:{port}"),
                    ("content-length", str(len(big))),
                    *modern_headers("tools/call", "slow").items(),
                ]
                request = h11.Request(method="POST", target="/mcp", headers=headers)
                await stream.send_all(client.send(request) + client.send(h11.Data(data=big[:1024])))
                event = client.next_event()
                while event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some())
                    event = client.next_event()
                assert isinstance(event, h11.Response)
                assert event.status_code == 503
                assert dict(event.headers)[b"retry-after"] == b"1"
                await stream.aclose()
        response = await http.post(
            url,
            content=modern_body(3, "tools/call", {"name": "slow", "arguments": {"seconds": 0}}),
            headers=modern_headers("tools/call", "slow"),
        )
        assert response.status_code == 200
    assert peak[0] == 1


async def occupy_in_process(
    nursery: trio.Nursery, client: McpTestClient, running: list[int], seconds: float = 1.0
) -> None:
    """Start a call of the slow tool through the test kit; return once the tool runs."""
    call = {"name": "slow", "arguments": {"seconds": seconds}}
    nursery.start_soon(partial(client.request, "tools/call", call, name="slow"))
    await trio.testing.wait_all_tasks_blocked()
    assert running[0] == 1


async def test_a_false_discover_header_buys_no_way_around_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=1)
    app = StreamableHTTPApp(slow_server(running, peak), options=ServerOptions(call_limits=limits))
    async with (
        open_test_client(app, protocol_version=MODERN) as client,
        trio.open_nursery() as nursery,
    ):
        await occupy_in_process(nursery, client, running)
        for method in ("server/discover", "subscriptions/listen"):
            lying = await client.post(
                modern_body(2, "tools/call", {"name": "slow", "arguments": {}}),
                headers=modern_headers(method),
            )
            assert lying.status == 503, method
        honest = await client.request("server/discover")
        assert honest.status == 200
    assert peak[0] == 1


async def test_the_per_client_cap_holds_in_the_session_era_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A session's POSTs count against its client's cap (429), batches one slot per request."""
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=10, max_inflight_per_client=2)
    app = StreamableHTTPApp(
        slow_server(running, peak), options=ServerOptions(call_limits=limits, reply_mode="json")
    )
    async with open_test_client(app, protocol_version="2025-03-26") as client:
        await client.initialize()
        session = client.session_headers()

        def call(request_id: int, seconds: float) -> dict[str, Any]:
            return {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": "slow", "arguments": {"seconds": seconds}},
            }

        batch = [call(1, 0), call(2, 0), call(3, 0)]
        over = await client.post(batch, headers=session)
        assert over.status == 429
        assert "already has 2 requests in flight" in over.json()["error"]["message"]
        assert running[0] == peak[0] == 0  # nothing of the batch started
        assert (await client.post(batch[:2], headers=session)).status == 200
        async with trio.open_nursery() as nursery:
            for index in (4, 5):
                nursery.start_soon(partial(client.post, call(index, 1.0), headers=session))
            await trio.testing.wait_all_tasks_blocked()
            assert running[0] == 2
            refused = await client.post(call(6, 0), headers=session)
            assert refused.status == 429
            assert refused.headers["retry-after"] == "1"
        # Each answer was complete when its post returned: its slot is back.
        stats = _inflight(app)
        assert (stats.in_flight, stats.clients, stats.refused_per_client) == (0, 0, 2)


def _inflight(app: StreamableHTTPApp) -> InflightStatistics:
    stats = app.statistics().inflight
    assert stats is not None
    return stats


async def test_the_caps_are_exported_as_metrics(autojump_clock: trio.testing.MockClock) -> None:
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=1, max_inflight_per_client=1)
    app = StreamableHTTPApp(
        slow_server(running, peak),
        options=ServerOptions(call_limits=limits, metrics_path="/metrics", refusal_delay=0),
    )
    async with (
        open_test_client(app, protocol_version=MODERN) as client,
        trio.open_nursery() as nursery,
    ):
        await occupy_in_process(nursery, client, running)
        refused = await client.request("tools/call", {"name": "slow"}, name="slow")
        assert refused.status == 429  # the same client (127.0.0.1) is over its 1
        text = (await client.send("GET", path="/metrics")).body.decode()
    lines = text.splitlines()
    for line in (
        'mcp_inflight_requests{pool="calls"} 1.0',
        'mcp_inflight_max{pool="calls"} 1.0',
        'mcp_inflight_max{pool="discover"} 64.0',
        'mcp_inflight_clients{pool="calls"} 1.0',
        'mcp_inflight_admitted_total{pool="calls"} 1.0',
        'mcp_inflight_refused_total{cap="per_client",pool="calls"} 1.0',
        'mcp_inflight_refused_total{cap="global",pool="calls"} 0.0',
    ):
        assert line in lines, line


@pytest.mark.parametrize("era", ["modern", "session"])
async def test_a_client_that_leaves_gives_its_slot_back(
    start_server: StartServer, http: httpx.AsyncClient, era: str
) -> None:
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=1)
    app = StreamableHTTPApp(slow_server(running, peak), options=ServerOptions(call_limits=limits))
    url = await start_server(app)
    call = {"name": "slow", "arguments": {"seconds": 60.0}}
    if era == "modern":
        body, headers = modern_body(1, "tools/call", call), modern_headers("tools/call", "slow")
    else:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        base = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2025-11-25",
        }
        response = await http.post(url, json=init, headers=base)
        headers = {**base, "mcp-session-id": response.headers["mcp-session-id"]}
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}
        ).encode()
    with trio.fail_after(10):
        async with httpx.AsyncClient(timeout=30) as leaving, trio.open_nursery() as nursery:
            nursery.start_soon(partial(leaving.post, url, content=body, headers=headers))
            while running[0] == 0:  # noqa: ASYNC110 - the handler's own counter
                await trio.sleep(0.01)
            assert _inflight(app).in_flight == 1
            nursery.cancel_scope.cancel()  # the client goes away mid-call
        await wait_until(lambda: _inflight(app).in_flight == 0)
    stats = _inflight(app)
    assert (stats.in_flight, stats.clients, stats.admitted) == (0, 0, 1 if era == "modern" else 2)


async def test_a_429_waits_out_its_delay_without_a_slot_and_the_waits_are_bounded(
    start_server: StartServer, autojump_clock: trio.testing.MockClock
) -> None:
    """A client retrying at once is slowed to one refusal per connection per delay."""
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=3, max_inflight_per_client=1)
    app = StreamableHTTPApp(
        slow_server(running, peak),
        options=ServerOptions(
            call_limits=limits, refusal_delay=1.5, max_delayed_refusals=2, metrics_path="/metrics"
        ),
    )
    url = await start_server(app)
    slow_call = modern_body(1, "tools/call", {"name": "slow", "arguments": {"seconds": 10.0}})
    headers = modern_headers("tools/call", "slow")
    refusals: list[tuple[int, float]] = []
    pool = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(limits=pool, timeout=30) as http:

        async def refused_call() -> None:
            start = trio.current_time()
            response = await http.post(url, content=slow_call, headers=headers)
            refusals.append((response.status_code, trio.current_time() - start))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(http.post, url, content=slow_call, headers=headers))
            while running[0] == 0:  # noqa: ASYNC110 - the handler's own counter
                await trio.sleep(0.01)
            async with trio.open_nursery() as over:
                for _ in range(3):
                    over.start_soon(refused_call)
                await trio.sleep(0.5)
                stats = app.statistics()
                assert stats.refusals_delaying == 2
                # Waiting refusals hold no slot: only the running call does.
                assert _inflight(app).in_flight == 1
                text = (await http.get(url.removesuffix("/mcp") + "/metrics")).text
                assert "mcp_http_refusals_delaying 2.0" in text.splitlines()
            nursery.cancel_scope.cancel()
    # Retry-After is 1 s (a slot may free any time): the wait is the smaller of the two,
    # jittered between half of it and all of it (so refusals do not come back in waves).
    assert sorted(status for status, _ in refusals) == [429, 429, 429]
    waits = sorted(elapsed for _, elapsed in refusals)
    assert waits[0] < 0.1  # over max_delayed_refusals: at once
    assert all(0.5 <= wait <= 1.01 for wait in waits[1:]), waits
    stats = app.statistics()
    assert (stats.refusals_delayed, stats.refusals_delaying) == (2, 0)


async def test_server_discover_has_its_own_pool_and_its_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A full call cap never refuses a probe; a full probe pool refuses one (503)."""
    running, peak = [0], [0]
    limits = CallLimits(max_inflight=1, max_inflight_discover=1)
    server = slow_server(running, peak)
    async with open_test_client(server, protocol_version=MODERN, call_limits=limits) as client:
        app = client.app
        calls = app._inflight.acquire_nowait(None)  # the call cap is full
        assert (await client.request("server/discover")).status == 200
        assert (await client.request("tools/list")).status == 503
        probe = app._discover_slots.acquire_nowait(None)  # so is the probe pool now
        refused = await client.request("server/discover")
        assert refused.status == 503
        assert "server/discover probes in flight" in refused.json()["error"]["message"]
        probe.release()
        calls.release()
        stats = app.statistics().inflight_discover
        assert stats is not None
        assert (stats.in_flight, stats.refused_busy) == (0, 1)
