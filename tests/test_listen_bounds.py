"""The listen-stream bounds: a per-client cap, a maximum lifetime, and the policy at the caps.

The hub's arithmetic runs sans-IO with plain numbers for trio's clock (and
under hypothesis: never over a cap, every server-ended stream ends with its
``SubscriptionsListenResult``); the lifetime task runs on trio's
``autojump_clock``; real HTTP shows what a client sees.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from _harness import Harness, Probe, assert_error, wait_until
from test_listen import (
    SERVER_ERROR,
    SUBSCRIPTION_ID,
    listen_body,
    listening,
    make_server,
    modern_headers,
    next_message,
)
from trio_mcp_sessions import (
    CallLimits,
    ListenLimits,
    ListenPolicy,
    ServiceUnavailable,
    StreamableHTTPApp,
)
from trio_mcp_sessions._protocol._subscriptions import SubscriptionFilter
from trio_mcp_sessions._stateless._listen import ListenHub

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer
    from trio_mcp_sessions._streams import EventStream

TOOLS = SubscriptionFilter(frozenset({"toolsListChanged"}))
PROMPTS = SubscriptionFilter(frozenset({"promptsListChanged"}))
TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"
LRD = ListenPolicy.LEAST_RECENTLY_DELIVERED


def frames(stream: EventStream) -> list[Any]:
    return [json.loads(event.data) for event in stream.take_ready()]


def closed_gracefully(stream: EventStream, subscription_id: Any) -> bool:
    """Ended, and the last frame is this stream's ``SubscriptionsListenResult``."""
    got = frames(stream)
    return (
        stream.ended
        and bool(got)
        and got[-1]
        == {
            "jsonrpc": "2.0",
            "id": subscription_id,
            "result": {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: subscription_id}},
        }
    )


# -- the per-client cap ---------------------------------------------------------------


def test_reject_refuses_a_clients_stream_over_its_own_cap_and_no_one_elses() -> None:
    hub = ListenHub(ListenLimits(max_streams=8, max_streams_per_client=2))
    a1, a2 = hub.open(1, TOOLS, now=0, client_key="a"), hub.open(2, TOOLS, now=0, client_key="a")
    with pytest.raises(ServiceUnavailable, match="for this client \\(at most 2\\)") as refused:
        hub.open(3, TOOLS, now=0, client_key="a")
    assert refused.value.retry_after == 5.0
    hub.open(4, TOOLS, now=0, client_key="b")  # another client is not affected
    for i in range(5):  # no key: the global cap only
        hub.open(10 + i, TOOLS, now=0)
    stats = hub.statistics()
    assert (stats.open_streams, stats.listening_clients) == (8, 2)
    assert (stats.refused, stats.refused_per_client, stats.evicted) == (1, 1, 0)
    assert not a1.ended
    assert not a2.ended
    a1.detach()  # the client closed one: it may open another
    hub.open(5, TOOLS, now=0, client_key="a")
    with pytest.raises(ServiceUnavailable, match="at most 8\\)"):
        hub.open(6, TOOLS, now=0, client_key="c")  # the global cap still holds
    assert hub.statistics().refused_per_client == 1


def test_least_recently_delivered_ends_that_clients_quietest_stream_first() -> None:
    hub = ListenHub(ListenLimits(max_streams_per_client=2, policy=LRD))
    quiet = hub.open("quiet", PROMPTS, now=0, client_key="a")  # opened first
    busy = hub.open("busy", TOOLS, now=0, client_key="a")
    other = hub.open("other", PROMPTS, now=0, client_key="b")
    assert hub.deliver(TOOLS_CHANGED, None) == 1  # busy was delivered to; quiet never
    new = hub.open("new", TOOLS, now=0, client_key="a")
    assert closed_gracefully(quiet, "quiet")
    assert not busy.ended
    assert not other.ended
    assert not new.ended
    assert hub.deliver(PROMPTS_CHANGED, None) == 1  # only other: quiet is gone
    # Now busy is a's least recently delivered (new was opened after it).
    hub.open("newer", TOOLS, now=0, client_key="a")
    assert busy.ended
    assert not new.ended
    stats = hub.statistics()
    assert (stats.open_streams, stats.evicted, stats.refused, stats.closed_by_server) == (
        3,
        2,
        0,
        2,
    )


def test_least_recently_delivered_at_the_global_cap_takes_any_clients() -> None:
    limits = ListenLimits(max_streams=3, policy="least_recently_delivered")  # type: ignore[arg-type]
    hub = ListenHub(limits)
    assert hub.limits.policy is LRD  # the policy may be given by its value
    streams = {name: hub.open(name, TOOLS, now=0, client_key=name) for name in "abc"}
    hub.deliver(TOOLS_CHANGED, None)  # a, b, c in opening order: a is still first
    streams["a"].take_ready()
    hub.open("d", TOOLS, now=0, client_key="d")
    assert streams["a"].ended
    assert [not streams[name].ended for name in "bc"] == [True, True]
    assert (hub.statistics().evicted, hub.statistics().open_streams) == (1, 3)


def test_a_client_gone_before_its_eviction_is_just_forgotten() -> None:
    hub = ListenHub(ListenLimits(max_streams_per_client=1, policy=LRD))
    first = hub.open(1, TOOLS, now=0, client_key="a")
    first.detach()
    second = hub.open(2, TOOLS, now=0, client_key="a")
    third = hub.open(3, TOOLS, now=0, client_key="a")
    assert closed_gracefully(second, 2)
    assert not third.ended
    stats = hub.statistics()
    assert (stats.evicted, stats.closed_by_server, stats.open_streams) == (1, 1, 1)


# -- the lifetime -------------------------------------------------------------------------


def test_streams_end_at_their_lifetime_in_the_order_they_opened() -> None:
    hub = ListenHub(ListenLimits(max_lifetime=100))
    assert hub.next_expiry() is None
    early = hub.open("early", TOOLS, now=0.0)
    gone = hub.open("gone", TOOLS, now=5.0)
    late = hub.open("late", TOOLS, now=10.0)
    assert hub.next_expiry() == 100.0
    assert hub.expire(99.9) == 0
    gone.detach()
    assert hub.expire(105.0) == 1  # early; gone's client left, nothing to end
    assert closed_gracefully(early, "early")
    assert hub.next_expiry() == 110.0
    assert hub.expire(110.0) == 1
    assert closed_gracefully(late, "late")
    assert hub.next_expiry() is None
    stats = hub.statistics()
    assert (stats.ended_lifetime, stats.closed_by_server, stats.open_streams) == (2, 2, 0)


def test_without_a_lifetime_nothing_expires() -> None:
    hub = ListenHub(ListenLimits(max_lifetime=None))
    stream = hub.open(1, TOOLS, now=0.0)
    assert hub.next_expiry() is None
    assert hub.expire(1e12) == 0
    assert not stream.ended


async def test_the_lifetime_task_ends_each_stream_on_time_on_trio_s_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = ListenHub(ListenLimits(max_lifetime=60))
    ended_at: dict[str, float] = {}

    async def read(name: str, stream: EventStream) -> None:
        async for _ in stream:
            pass
        ended_at[name] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        await trio.sleep(10)  # the task waits for a first stream, then its deadline
        for name, pause in (("a", 0), ("b", 15), ("c", 5)):
            await trio.sleep(pause)
            nursery.start_soon(read, name, hub.open(name, TOOLS, now=trio.current_time()))
        await trio.sleep(200)
        assert ended_at == {"a": 70, "b": 85, "c": 90}
        # The task keeps going: a stream opened later ends 60 s after it opened.
        late = hub.open("late", TOOLS, now=trio.current_time())
        nursery.start_soon(read, "late", late)
        await trio.sleep(61)
        assert ended_at["late"] == 230 + 60
        nursery.cancel_scope.cancel()
    assert hub.statistics().ended_lifetime == 4


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"max_streams_per_client": 0}, ValueError),
        ({"max_streams_per_client": True}, TypeError),
        ({"max_lifetime": 0}, ValueError),
        ({"max_lifetime": float("inf")}, ValueError),
        ({"max_lifetime": float("nan")}, ValueError),
        ({"max_lifetime": "60"}, TypeError),
        ({"policy": "oldest"}, ValueError),
        ({"policy": 1}, TypeError),
    ],
)
def test_listen_limits_refuse_nonsense(bad: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ListenLimits(**bad)


# -- the model: never over a cap, every server end is graceful ------------------------

KEYS = st.sampled_from(["a", "b", "c", None])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), KEYS, st.sampled_from([TOOLS, PROMPTS])),
        st.tuples(st.just("deliver"), st.sampled_from([TOOLS_CHANGED, PROMPTS_CHANGED])),
        st.tuples(st.just("detach"), st.integers(0, 40)),
        st.tuples(st.just("read"), st.integers(0, 40)),
        st.tuples(st.just("wait"), st.floats(0, 50)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS, st.sampled_from(list(ListenPolicy)), st.integers(1, 4), st.integers(1, 3))
def test_the_caps_hold_under_any_sequence_and_every_server_end_is_graceful(
    ops: list[Any], policy: ListenPolicy, max_streams: int, per_client: int
) -> None:
    limits = ListenLimits(
        max_streams=max_streams,
        max_streams_per_client=per_client,
        max_lifetime=100,
        max_buffered_events=3,
        policy=policy,
    )
    hub = ListenHub(limits)
    now = 0.0
    # Every stream ever opened: (id, key, stream, detached by its client, frames read).
    opened: list[tuple[int, str | None, EventStream, list[bool], list[Any]]] = []
    for op in ops:
        if op[0] == "open":
            key = op[1]
            live = [o for o in opened if o[1] == key and not o[2].ended and not o[3][0]]
            try:
                stream = hub.open(len(opened), op[2], now=now, client_key=key)
            except ServiceUnavailable:
                # Refused only under REJECT, and only at a cap.
                assert policy is ListenPolicy.REJECT
                at_client = key is not None and len(live) >= per_client
                assert at_client or hub.statistics().open_streams >= max_streams
                continue
            opened.append((len(opened), key, stream, [False], []))
        elif op[0] == "deliver":
            hub.deliver(op[1], None)
        elif op[0] in ("detach", "read") and opened:
            _, _, stream, detached, got = opened[op[1] % len(opened)]
            if detached[0] or stream.ended:
                continue  # a reader of an ended stream reads to its end
            if op[0] == "detach":
                stream.detach()
                detached[0] = True
            else:
                got += frames(stream)
        elif op[0] == "wait":
            now += op[1]
            hub.expire(now)
        stats = hub.statistics()
        assert stats.open_streams <= max_streams
        live_by_key: dict[str | None, int] = {}
        for _, key, stream, detached, _ in opened:
            if not stream.ended and not detached[0]:
                live_by_key[key] = live_by_key.get(key, 0) + 1
        assert sum(live_by_key.values()) == stats.open_streams
        assert all(n <= per_client for k, n in live_by_key.items() if k is not None)
        assert stats.listening_clients == len([k for k in live_by_key if k is not None])
    stats = hub.statistics()
    ended = [o for o in opened if o[2].ended and not o[3][0]]
    assert stats.closed_by_server == len(ended)
    assert stats.closed_by_server == stats.ended_slow + stats.ended_lifetime + stats.evicted
    for sid, _, stream, _, got in ended:
        got += frames(stream)
        assert got[0]["method"] == "notifications/subscriptions/acknowledged"
        assert got[-1]["id"] == sid
        assert got[-1]["result"]["resultType"] == "complete"
    if policy is LRD:
        assert stats.refused == 0


# -- the command line ---------------------------------------------------------------------


def test_the_command_line_sets_the_new_listen_bounds() -> None:
    from trio_mcp_sessions._cli import _parser, listen_limits_from

    defaults = listen_limits_from(_parser().parse_args(["serve", "m:s"]))
    assert defaults == ListenLimits()
    assert (defaults.max_streams_per_client, defaults.max_lifetime) == (32, 3600.0)
    assert defaults.policy is ListenPolicy.REJECT
    args = _parser().parse_args(
        [
            "serve",
            "m:s",
            "--max-listen-streams-per-client",
            "3",
            "--listen-max-lifetime",
            "90",
            "--listen-policy",
            "least_recently_delivered",
        ]
    )
    assert listen_limits_from(args) == ListenLimits(
        max_streams_per_client=3, max_lifetime=90.0, policy=LRD
    )
    args = _parser().parse_args(["serve", "m:s", "--listen-max-lifetime", "0"])
    assert listen_limits_from(args).max_lifetime is None
    args = _parser().parse_args(["serve", "m:s", "--max-listen-streams-per-client", "0"])
    with pytest.raises(SystemExit, match="error: max_streams_per_client must be at least 1"):
        listen_limits_from(args)


# -- over real HTTP ---------------------------------------------------------------------


def _by_user(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-user":
            return bytes(value).decode()
    return None


async def _start(start_server: StartServer, http: httpx.AsyncClient, **options: Any) -> Harness:
    app = StreamableHTTPApp(make_server(), **options)
    return Harness(app, await start_server(app), http, Probe())


def _as(user: str, body: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    return {**modern_headers("subscriptions/listen"), "x-user": user}, body


async def test_over_http_a_clients_second_stream_is_refused_and_keyed_like_the_call_limits(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await _start(
        start_server,
        http,
        principal=_by_user,
        call_limits=CallLimits(rate_limit_key=lambda info: info.principal),
        listen_limits=ListenLimits(max_streams_per_client=1),
    )
    listen = h.app.sessionless.listen  # type: ignore[union-attr]
    async with h.stream("POST", *_as("alice", listen_body(1, toolsListChanged=True))) as (_, a):
        await next_message(a)
        r = await h.post(listen_body(2), headers=_as("alice", {})[0])
        body = assert_error(r, 503, SERVER_ERROR, request_id=2)
        assert "for this client (at most 1)" in body["error"]["message"]
        assert r.headers["retry-after"] == "5"
        # Same address, another principal: the key is the call limits' key.
        async with h.stream("POST", *_as("bob", listen_body(3, toolsListChanged=True))) as (
            r,
            b,
        ):
            assert r.status_code == 200
            await next_message(b)
            assert await h.manager.notify_all(TOOLS_CHANGED) == 2
            assert (await next_message(a))["method"] == TOOLS_CHANGED
            stats = listen.statistics()
            assert (stats.refused, stats.refused_per_client, stats.listening_clients) == (1, 1, 2)
    await wait_until(lambda: listen.statistics().open_streams == 0)


async def test_over_http_a_clients_second_stream_evicts_its_first_gracefully(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    h = await _start(
        start_server,
        http,
        metrics_path="/metrics",
        listen_limits=ListenLimits(max_streams_per_client=1, policy=LRD),
    )
    async with listening(h, listen_body("old", toolsListChanged=True)) as (_, old):
        await next_message(old)
        async with listening(h, listen_body("new", toolsListChanged=True)) as (r, new):
            assert r.status_code == 200
            assert (await next_message(new))["params"]["_meta"] == {SUBSCRIPTION_ID: "new"}
            with trio.fail_after(5):
                rest = [e.json() for e in await old.rest()]
            assert rest == [
                {
                    "jsonrpc": "2.0",
                    "id": "old",
                    "result": {
                        "resultType": "complete",
                        "_meta": {
                            SUBSCRIPTION_ID: "old",
                            "io.modelcontextprotocol/serverInfo": {
                                "name": "listen-tests",
                                "version": "1.0",
                            },
                        },
                    },
                }
            ]
            assert await h.manager.notify_all(TOOLS_CHANGED) == 1
            assert (await next_message(new))["method"] == TOOLS_CHANGED
            text = (await http.get(h.url.removesuffix("/mcp") + "/metrics")).text
    for line in (
        "mcp_listen_evicted_total 1.0",
        "mcp_listen_refused_total 0.0",
        "mcp_listen_refused_per_client_total 0.0",
        "mcp_listen_ended_lifetime_total 0.0",
        "mcp_listen_streams_per_client_max 1.0",
        "mcp_listen_clients 1.0",
    ):
        assert line in text.splitlines(), line


async def test_over_http_a_stream_at_its_lifetime_gets_its_result_and_may_listen_again(
    autojump_clock: trio.testing.MockClock, start_server: StartServer, http: httpx.AsyncClient
) -> None:
    # Real sockets under a mock clock: let the kernel report readiness (10 ms of
    # real idleness) before the clock jumps.
    autojump_clock.autojump_threshold = 0.01
    h = await _start(start_server, http, listen_limits=ListenLimits(max_lifetime=3))
    listen = h.app.sessionless.listen  # type: ignore[union-attr]
    async with listening(h, listen_body(5, toolsListChanged=True)) as (_, sse):
        opened_at = trio.current_time()
        await next_message(sse)
        with trio.fail_after(5):
            rest = [e.json() for e in await sse.rest()]
        assert 3 <= trio.current_time() - opened_at < 4
    assert rest[-1]["id"] == 5
    assert rest[-1]["result"]["resultType"] == "complete"
    assert rest[-1]["result"]["_meta"][SUBSCRIPTION_ID] == 5
    stats = listen.statistics()
    assert (stats.ended_lifetime, stats.closed_by_server, stats.open_streams) == (1, 1, 0)
    async with listening(h, listen_body(6, toolsListChanged=True)) as (r, again):
        assert r.status_code == 200
        assert (await next_message(again))["params"]["_meta"] == {SUBSCRIPTION_ID: 6}
