"""Keyed call budgets of 2026-07-28 requests: per method, per tool, discover's own, shared.

The arithmetic is sans-IO (:class:`CallWindows`, plain numbers, a hypothesis
model); the HTTP answers are checked through the app in process (the test
kit, on trio's mock clock where no Redis is involved), the sharing with a
real ``redis-server``.
"""

from __future__ import annotations

import gc
import re
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from _redis_server import RedisServer, redis_client
from trio_mcp_sessions import (
    Budget,
    CallLimits,
    KeyedLimit,
    McpServer,
    RateLimit,
    RedisRateLimiter,
    RequestInfo,
    ServerOptions,
    SharedCallLimiter,
    StreamableHTTPApp,
)
from trio_mcp_sessions._cli import _open_stores, _parser, options_from
from trio_mcp_sessions._manager._budgets import CallWindows
from trio_mcp_sessions.testing import McpTestClient, TestResponse, open_test_client

pytestmark = pytest.mark.usefixtures("no_tracebacks")

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def make_server() -> McpServer:
    server = McpServer("budgets")

    @server.tool()
    def echo(text: str) -> str:
        """Echo."""
        return text

    @server.tool()
    def expensive(text: str) -> str:
        """Costly."""
        return text.upper()

    return server


async def post(
    client: McpTestClient,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    mcp_name: str | None = None,
    user: str | None = None,
) -> TestResponse:
    params = params or {}
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if method == "tools/call":
        headers["mcp-name"] = mcp_name or params["name"]
    if user is not None:
        headers["x-user"] = user
    body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": {**params, "_meta": META}}
    return await client.post(body, headers=headers)


def call(name: str) -> dict[str, Any]:
    return {"name": name, "arguments": {"text": "hi"}}


def assert_refused(response: TestResponse, **budget: str) -> dict[str, Any]:
    """429, Retry-After, and a JSON-RPC error that names *budget* and nothing else."""
    assert response.status == 429, response.body
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    error = response.json()["error"]
    assert error["code"] == -32000
    assert error["data"] == {**budget, "retryAfter": retry_after}
    assert error["message"].startswith("Too Many Requests: too many ")
    return dict(error)


def by_user(info: RequestInfo) -> str | None:
    return info.headers.get("x-user")


# -- the limits, validated ------------------------------------------------------------


def test_keyed_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="total, per_client or both"):
        KeyedLimit()
    with pytest.raises(TypeError, match="RateLimit"):
        KeyedLimit(total=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="discover_limit"):
        CallLimits(method_limits={"server/discover": KeyedLimit(total=RateLimit(1, 1))})
    with pytest.raises(TypeError, match="mapping"):
        CallLimits(tool_limits=[("a", KeyedLimit(total=RateLimit(1, 1)))])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty names"):
        CallLimits(tool_limits={"": KeyedLimit(total=RateLimit(1, 1))})
    with pytest.raises(TypeError, match=re.escape("tool_limits['a'] must be a KeyedLimit")):
        CallLimits(tool_limits={"a": RateLimit(1, 1)})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="discover_limit"):
        CallLimits(discover_limit=RateLimit(1, 1))  # type: ignore[arg-type]
    # A copy, read-only: changing the caller's dict later changes nothing.
    given_limits = {"a": KeyedLimit(total=RateLimit(1, 1))}
    limits = CallLimits(tool_limits=given_limits)
    given_limits["b"] = KeyedLimit(total=RateLimit(1, 1))
    assert list(limits.tool_limits) == ["a"]
    with pytest.raises(TypeError):
        limits.tool_limits["b"] = given_limits["b"]  # type: ignore[index]
    # Plain frozen data, as every limit: equal by value, hashable.
    assert limits == CallLimits(tool_limits={"a": KeyedLimit(total=RateLimit(1, 1))})
    assert hash(ServerOptions(call_limits=limits)) == hash(ServerOptions(call_limits=limits))


def test_discover_has_a_generous_budget_by_default() -> None:
    limits = CallLimits()
    assert limits.discover_limit == KeyedLimit(per_client=RateLimit(100, 1.0))
    assert CallWindows(limits).enabled
    assert not CallWindows(CallLimits(discover_limit=None)).enabled


# -- the arithmetic (sans-IO) ---------------------------------------------------------


def test_each_request_spends_from_its_own_budgets() -> None:
    limits = CallLimits(
        rate_limit=RateLimit(100, 1),
        rate_limit_per_client=RateLimit(10, 1),
        method_limits={"resources/read": KeyedLimit(per_client=RateLimit(5, 1))},
        tool_limits={"expensive": KeyedLimit(total=RateLimit(3, 1), per_client=RateLimit(1, 1))},
        discover_limit=KeyedLimit(total=RateLimit(1000, 1)),
    )
    windows = CallWindows(limits)
    calls = [Budget("calls"), Budget("calls", per_client=True)]
    assert [b for b, *_ in windows.plan("server/discover")] == [Budget("discover")]
    assert [b for b, *_ in windows.plan("tools/list")] == calls
    assert [b for b, *_ in windows.plan("tools/call", "echo")] == calls
    assert [b for b, *_ in windows.plan("resources/read", "expensive")] == [
        *calls,
        Budget("method", "resources/read", per_client=True),
    ]
    assert [b for b, *_ in windows.plan("tools/call", "expensive")] == [
        *calls,
        Budget("tool", "expensive"),
        Budget("tool", "expensive", per_client=True),
    ]


def test_a_refusal_names_the_budget_that_frees_last_and_records_nothing() -> None:
    limits = CallLimits(
        rate_limit_per_client=RateLimit(2, 10),
        tool_limits={"expensive": KeyedLimit(per_client=RateLimit(1, 60))},
    )
    windows = CallWindows(limits)
    plan = windows.plan("tools/call", "expensive")
    assert windows.acquire(plan, "a", 0.0) == (0.0, None)
    wait, budget = windows.acquire(plan, "a", 1.0)
    assert (wait, budget) == (59.0, Budget("tool", "expensive", per_client=True))
    # The refusal spent nothing: "a" still has one plain call left.
    assert windows.acquire(windows.plan("tools/call", "echo"), "a", 2.0) == (0.0, None)
    wait, budget = windows.acquire(plan, "a", 3.0)
    assert budget == Budget("tool", "expensive", per_client=True)  # 57 s beats the 7 s
    assert windows.acquire(plan, "b", 3.0) == (0.0, None)  # another key, its own windows
    assert windows.acquire(plan, None, 3.0) == (0.0, None)  # no key: no per-client window
    assert windows.acquire(plan, "a", 60.0) == (0.0, None)


def test_per_client_windows_stay_bounded() -> None:
    limits = CallLimits(
        rate_limit_per_client=RateLimit(1, 1),
        tool_limits={"expensive": KeyedLimit(per_client=RateLimit(1, 5))},
        discover_limit=None,
    )
    windows = CallWindows(limits, max_keys=50)
    plan = windows.plan("tools/call", "expensive")
    for i in range(1000):  # a flood of one-off addresses
        windows.acquire(plan, f"10.0.{i // 250}.{i % 250}", i / 1000)
    assert windows.tracked_keys() == 2 * 50
    # Unknown tool names get no windows: naming tools cannot grow memory.
    for i in range(1000):
        windows.acquire(windows.plan("tools/call", f"tool{i}"), "one", 2.0)
    assert windows.tracked_keys() == 50 + 1
    # Emptied windows leave: after the longest window, one key each is left.
    windows.acquire(plan, "last", 10.0)
    assert windows.tracked_keys() == 2


LIMITS = st.builds(RateLimit, st.integers(1, 4), st.sampled_from([0.5, 1.0, 2.0, 3.0]).map(float))
KEYED = st.builds(KeyedLimit, LIMITS, LIMITS) | st.builds(KeyedLimit, per_client=LIMITS)
REQUESTS = st.lists(
    st.tuples(
        st.integers(0, 6).map(lambda n: n / 4),  # seconds since the previous request
        st.sampled_from(
            [
                ("tools/call", "a"),
                ("tools/call", "b"),
                ("tools/call", "other"),
                ("resources/read", None),
                ("server/discover", None),
                ("ping", None),
            ]
        ),
        st.sampled_from(["k1", "k2", "k3", None]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    rate_limit=st.none() | LIMITS,
    per_client=st.none() | LIMITS,
    tool_a=KEYED,
    tool_b=st.none() | KEYED,
    method=st.none() | KEYED,
    discover=st.none() | KEYED,
    requests=REQUESTS,
)
def test_no_budget_is_ever_exceeded(
    rate_limit: RateLimit | None,
    per_client: RateLimit | None,
    tool_a: KeyedLimit,
    tool_b: KeyedLimit | None,
    method: KeyedLimit | None,
    discover: KeyedLimit | None,
    requests: list[tuple[float, tuple[str, str | None], str | None]],
) -> None:
    """A model: each window is the list of admitted times; refused iff one is full."""
    limits = CallLimits(
        rate_limit=rate_limit,
        rate_limit_per_client=per_client,
        tool_limits={"a": tool_a, **({"b": tool_b} if tool_b else {})},
        method_limits={"resources/read": method} if method else {},
        discover_limit=discover,
    )
    windows = CallWindows(limits)
    admitted: dict[tuple[Budget, str | None], list[float]] = {}
    now = 0.0
    for step, (name, tool), key in requests:
        now += step
        plan = windows.plan(name, tool)
        applied = [(b, lim, key if b.per_client else None) for b, lim, _ in plan]
        applied = [(b, lim, k) for b, lim, k in applied if not b.per_client or k is not None]
        recent = {
            (b, k): [t for t in admitted.get((b, k), []) if t > now - lim.window]
            for b, lim, k in applied
        }
        full = {b for b, lim, k in applied if len(recent[b, k]) >= lim.max_creations}
        wait, refused_by = windows.acquire(plan, key, now)
        if full:
            assert refused_by in full
            assert wait > 0
            # Retry-After is when the refusing window frees a slot, not later.
            lim = next(lim for b, lim, _ in applied if b == refused_by)
            k = key if refused_by.per_client else None
            oldest = recent[refused_by, k][-lim.max_creations]
            assert wait == pytest.approx(oldest + lim.window - now)
        else:
            assert (wait, refused_by) == (0.0, None)
            for b, _, k in applied:
                admitted.setdefault((b, k), []).append(now)
        for b, lim, k in applied:  # the invariant itself
            times = admitted.get((b, k), [])
            assert len([t for t in times if t > now - lim.window]) <= lim.max_creations


# -- over HTTP ------------------------------------------------------------------------


async def test_a_tool_over_its_budget_gets_429_naming_the_tool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = CallLimits(tool_limits={"expensive": KeyedLimit(per_client=RateLimit(2, 60))})
    app = StreamableHTTPApp(
        make_server(), options=ServerOptions(call_limits=limits, metrics_path="/metrics")
    )
    async with open_test_client(app) as client:
        for _ in range(2):
            assert (await post(client, "tools/call", call("expensive"))).status == 200
        refused = await post(client, "tools/call", call("expensive"))
        error = assert_refused(refused, budget="tool", scope="per_client", name="expensive")
        assert error["message"] == (
            "Too Many Requests: too many calls of tool 'expensive' from this client; slow down"
        )
        assert refused.json()["id"] == 9
        # Other tools, other methods and the probe are not this budget.
        assert (await post(client, "tools/call", call("echo"))).status == 200
        assert (await post(client, "tools/list")).status == 200
        stats = app.call_statistics()
        assert stats.refused == {Budget("tool", "expensive", per_client=True): 1}
        assert stats.admitted == 2  # the others had no budget to spend from
        assert stats.tracked_keys == 1
        metrics = (await client.send("GET", path="/metrics")).body.decode()
        assert (
            'mcp_call_budget_refused_total{budget="tool",name="expensive",scope="per_client"} 1.0'
            in metrics
        )
        assert "mcp_call_budget_admitted_total 2.0" in metrics


async def test_the_tool_name_counts_only_once_the_header_matches_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = CallLimits(tool_limits={"expensive": KeyedLimit(total=RateLimit(1, 60))})
    app = StreamableHTTPApp(make_server(), options=ServerOptions(call_limits=limits))
    async with open_test_client(app) as client:
        # A header naming another tool than the body is refused before any budget.
        for header, body in (("expensive", "echo"), ("echo", "expensive")):
            mismatch = await post(client, "tools/call", call(body), mcp_name=header)
            assert mismatch.status == 400, mismatch.body
        assert app.call_statistics().admitted == 0
        assert (await post(client, "tools/call", call("expensive"))).status == 200
        assert_refused(
            await post(client, "tools/call", call("expensive")),
            budget="tool",
            scope="global",
            name="expensive",
        )


async def test_a_method_budget_and_the_call_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = CallLimits(
        rate_limit=RateLimit(4, 60),
        method_limits={"tools/list": KeyedLimit(total=RateLimit(1, 60))},
    )
    app = StreamableHTTPApp(make_server(), options=ServerOptions(call_limits=limits))
    async with open_test_client(app) as client:
        assert (await post(client, "tools/list")).status == 200
        error = assert_refused(
            await post(client, "tools/list"), budget="method", scope="global", name="tools/list"
        )
        assert "too many tools/list requests from all clients together" in error["message"]
        for _ in range(3):
            assert (await post(client, "tools/call", call("echo"))).status == 200
        error = assert_refused(
            await post(client, "tools/call", call("echo")), budget="calls", scope="global"
        )
        assert error["message"].endswith("too many requests from all clients together; slow down")


async def test_clients_have_their_own_windows_and_see_only_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = CallLimits(rate_limit_per_client=RateLimit(1, 60), rate_limit_key=by_user)
    app = StreamableHTTPApp(make_server(), options=ServerOptions(call_limits=limits))
    async with open_test_client(app) as client:
        assert (await post(client, "tools/call", call("echo"), user="alice")).status == 200
        refused = await post(client, "tools/call", call("echo"), user="alice")
        assert_refused(refused, budget="calls", scope="per_client")
        assert b"alice" not in refused.body  # not even the client's own key is echoed
        assert (await post(client, "tools/call", call("echo"), user="bob")).status == 200
        # No key: exempt from every per-client window.
        for _ in range(3):
            assert (await post(client, "tools/call", call("echo"))).status == 200
        assert app.call_statistics().tracked_keys == 2


async def test_discover_is_never_throttled_by_the_call_budget_and_has_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = CallLimits(
        rate_limit=RateLimit(1, 60),
        rate_limit_per_client=RateLimit(1, 60),
        discover_limit=KeyedLimit(per_client=RateLimit(5, 1)),
    )
    app = StreamableHTTPApp(make_server(), options=ServerOptions(call_limits=limits))
    async with open_test_client(app) as client:
        assert (await post(client, "tools/call", call("echo"))).status == 200
        assert_refused(
            await post(client, "tools/call", call("echo")), budget="calls", scope="global"
        )
        # The call budget is spent; the probe is not charged to it.
        for _ in range(5):
            discover = await post(client, "server/discover")
            assert discover.status == 200, discover.body
        refused = await post(client, "server/discover")
        error = assert_refused(refused, budget="discover", scope="per_client")
        assert "too many server/discover requests from this client" in error["message"]
        await trio.sleep(1)  # the discover window passes; the call window does not
        assert (await post(client, "server/discover")).status == 200
        assert (await post(client, "tools/call", call("echo"))).status == 429
        stats = app.call_statistics()
        assert stats.refused == {Budget("calls"): 2, Budget("discover", per_client=True): 1}


async def test_the_default_discover_budget_holds_100_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = StreamableHTTPApp(make_server())
    async with open_test_client(app) as client:
        statuses = [(await post(client, "server/discover")).status for _ in range(101)]
        assert statuses == [200] * 100 + [429]
        await trio.sleep(1)
        assert (await post(client, "server/discover")).status == 200
        for _ in range(150):  # no call budget by default
            assert (await post(client, "tools/call", call("echo"))).status == 200


# -- shared through Redis -------------------------------------------------------------


async def test_redis_spends_in_every_window_or_none_and_names_the_one_that_refused(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    client = await redis_client(nursery, redis_server)
    limiter = RedisRateLimiter(client, prefix="p")
    windows = [("calls", "", None, RateLimit(5, 60)), ("tool", "a:b", "::1", RateLimit(1, 30))]
    assert await limiter.spend(windows) == (0.0, -1)
    wait, index = await limiter.spend(windows)
    assert index == 1
    assert 29 < wait <= 30
    assert await limiter.spend([]) == (0.0, -1)
    # ":" in names and keys is escaped, so no two windows share a key.
    keys = {key async for key in client.scan_iter(match="p:*")}
    assert keys == {b"p:rl:call:calls", b"p:rl:call:tool:a%3Ab:c:%3A%3A1"}
    assert await client.zcard(b"p:rl:call:calls") == 1  # the refusal recorded nothing
    assert 29_000 < await client.pttl(b"p:rl:call:tool:a%3Ab:c:%3A%3A1") <= 30_000


async def test_two_instances_share_a_per_client_call_budget(
    nursery: trio.Nursery,
    redis_server: RedisServer,
) -> None:
    limits = CallLimits(
        rate_limit_per_client=RateLimit(3, 60),
        tool_limits={"expensive": KeyedLimit(total=RateLimit(1, 60))},
    )
    first = RedisRateLimiter(await redis_client(nursery, redis_server), prefix="p")
    second = RedisRateLimiter(
        await redis_client(nursery, redis_server),
        global_limit=RateLimit(100, 60),  # a creation limiter shares the call budgets too
        prefix="p",
    )
    assert isinstance(first, SharedCallLimiter)
    apps = [
        StreamableHTTPApp(make_server(), call_limits=limits, call_rate_limiter=first),
        StreamableHTTPApp(make_server(), call_limits=limits, rate_limiter=second),
    ]
    with trio.fail_after(20):
        async with open_test_client(apps[0]) as one, open_test_client(apps[1]) as other:
            assert (await post(one, "tools/call", call("expensive"))).status == 200
            assert_refused(
                await post(other, "tools/call", call("expensive")),
                budget="tool",
                scope="global",
                name="expensive",
            )
            assert (await post(other, "tools/call", call("echo"))).status == 200
            assert (await post(one, "tools/call", call("echo"))).status == 200
            for client in (one, other):  # three spent between them: each refuses the fourth
                assert_refused(
                    await post(client, "tools/call", call("echo")),
                    budget="calls",
                    scope="per_client",
                )
        redis = await redis_client(nursery, redis_server)
        keys = {key async for key in redis.scan_iter(match="p:*")}
        # Their own keys, not the creation windows' (p:rl:global, p:rl:c:...).
        assert keys == {b"p:rl:call:calls:c:127.0.0.1", b"p:rl:call:tool:expensive"}
        # A window's TTL (Redis keeps real time; the three 429s waited their refusal_delay).
        assert 50_000 < await redis.pttl(b"p:rl:call:calls:c:127.0.0.1") <= 60_000
        for app in apps:
            stats = app.call_statistics()
            assert stats.shared
            assert stats.fallbacks == 0
            assert stats.tracked_keys == 0  # nothing held locally while Redis answers


# coredis leaks the memory streams of a connection whose connect failed (see
# test_store_redis.py): collected here, in the test that expects them.
@pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")
async def test_redis_down_means_local_windows_not_500(
    nursery: trio.Nursery,
    redis_server: RedisServer,
) -> None:
    limits = CallLimits(rate_limit_per_client=RateLimit(2, 60))
    limiter = RedisRateLimiter(await redis_client(nursery, redis_server), prefix="p")
    app = StreamableHTTPApp(
        make_server(), call_limits=limits, call_rate_limiter=limiter, metrics_path="/metrics"
    )
    with trio.fail_after(20):
        async with open_test_client(app) as client:
            assert (await post(client, "tools/call", call("echo"))).status == 200
            redis_server.stop()
            # The shared window held one; this instance's own windows start afresh.
            statuses = [(await post(client, "tools/call", call("echo"))).status for _ in range(3)]
            assert statuses == [200, 200, 429]
            assert (await post(client, "server/discover")).status == 200
            stats = app.call_statistics()
            assert stats.fallbacks == 4
            assert stats.store is not None
            assert stats.store.state == "open"
            metrics = (await client.send("GET", path="/metrics")).body.decode()
            assert "mcp_call_budget_store_down 1.0" in metrics
            assert "mcp_call_budget_fallbacks_total 4.0" in metrics
    redis_server.start()
    gc.collect()


async def test_the_command_line_shares_call_budgets_through_redis(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    import contextlib

    target = "examples/notes_server.py:server"
    for flags, shared in (([], False), (["--tool-rate-limit", "search=1/1"], True)):
        args = _parser().parse_args(["serve", target, "--redis", redis_server.url, *flags])
        async with contextlib.AsyncExitStack() as stack:
            stores = await _open_stores(args, stack, nursery)
        assert ("call_rate_limiter" in stores) is shared


# -- the command line -----------------------------------------------------------------


def test_the_command_line_sets_method_tool_and_discover_budgets() -> None:
    args = _parser().parse_args(
        [
            "serve",
            "examples/notes_server.py:server",
            "--tool-rate-limit",
            "search=10/1",
            "--tool-rate-limit-per-client",
            "search=2/1",
            "--tool-rate-limit-per-client",
            "other=1/60",
            "--method-rate-limit-per-client",
            "resources/read=50/1",
            "--discover-rate-limit",
            "1000/1",
            "--discover-rate-limit-per-client",
            "off",
        ]
    )
    limits = options_from(args).call_limits
    assert dict(limits.tool_limits) == {
        "search": KeyedLimit(total=RateLimit(10, 1), per_client=RateLimit(2, 1)),
        "other": KeyedLimit(per_client=RateLimit(1, 60)),
    }
    assert dict(limits.method_limits) == {"resources/read": KeyedLimit(per_client=RateLimit(50, 1))}
    assert limits.discover_limit == KeyedLimit(total=RateLimit(1000, 1))
    plain = options_from(_parser().parse_args(["serve", "examples/notes_server.py:server"]))
    assert plain.call_limits == CallLimits()
    off = ["--discover-rate-limit-per-client", "off"]
    args = _parser().parse_args(["serve", "examples/notes_server.py:server", *off])
    assert options_from(args).call_limits.discover_limit is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tool-rate-limit", "search"], "expected NAME=CALLS/SECONDS such as search=10/1"),
        (["--tool-rate-limit", "=1/1"], "expected NAME=CALLS/SECONDS"),
        (["--tool-rate-limit", "search=ten"], "expected CALLS/SECONDS such as 10/60"),
        (["--method-rate-limit", "tools/list=0/1"], "pass no rate limit instead"),
        (["--discover-rate-limit-per-client", "fast"], "expected CALLS/SECONDS"),
        (["--call-rate-limit", "5"], "expected CALLS/SECONDS"),
    ],
)
def test_bad_budget_flags_are_refused_clearly(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "examples/notes_server.py:server", *flags])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--tool-rate-limit", "a=1/1", "--tool-rate-limit", "a=2/1"],
            "error: --tool-rate-limit: 'a' given twice",
        ),
        (
            ["--method-rate-limit", "server/discover=1/1"],
            "error: server/discover has a budget of its own: set discover_limit",
        ),
    ],
)
def test_conflicting_budget_flags_are_refused_clearly(flags: list[str], message: str) -> None:
    args = _parser().parse_args(["serve", "examples/notes_server.py:server", *flags])
    with pytest.raises(SystemExit, match=re.escape(message)):
        options_from(args)
