"""Model-based property test of the bounded manager (hypothesis, trio's MockClock).

Random sequences of operations (create, touch, begin/end a request, open/close
a stream, delete, advance the clock, a failing initialize) run against the
real :class:`BoundedSessionManager` and a plain-Python model of what it should
do. After every step: live <= max, limiter tokens == live sessions, every
expiry happened exactly at the deadline the model computes, every eviction
victim is the one the policy names (never a busy one under the default
policy), and creation rate limits refuse exactly when the sliding window is
full, with the model's Retry-After.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    EventStream,
    EvictionPolicy,
    McpError,
    McpServer,
    RateLimit,
    RateLimited,
    RequestInfo,
    SessionLimits,
    TooManySessions,
)
from trio_mcp_sessions._protocol._clock import SessionClock
from trio_mcp_sessions._protocol._jsonrpc import Notification, Request
from trio_mcp_sessions._protocol._lifecycle import parse_initialize

MAX_SESSIONS = 3
IDLE, INIT, LIFETIME = 20, 7, 45
PER_CLIENT = RateLimit(3, 10)
KEYS = ("10.0.0.1", "10.0.0.2")


@dataclass
class ModelSession:
    session_id: str
    created_at: float
    last_activity: float
    seen_use: bool = False
    requests: list[tuple[int, EventStream]] = field(default_factory=list)
    streams: list[EventStream] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.requests or self.streams)

    def clock(self) -> SessionClock:
        """The production idle rule, fed what the model saw (tested on its own elsewhere)."""
        clock = SessionClock(
            self.created_at, idle_timeout=IDLE, init_timeout=INIT, max_lifetime=LIFETIME
        )
        if self.seen_use:
            clock.use(self.last_activity)
        else:
            clock.activity(self.last_activity)
        clock.inflight, clock.streams = len(self.requests), len(self.streams)
        return clock

    def deadline(self) -> float:
        return self.clock().deadline()

    def expiry_reason(self) -> CloseReason:
        return CloseReason(self.clock().expiry_reason(self.deadline()))


operations = st.lists(
    st.one_of(
        # Creations are drawn more often, so the cap and the windows are reached.
        st.tuples(st.just("create"), st.sampled_from(KEYS), st.none()),
        st.tuples(st.just("create"), st.sampled_from(KEYS), st.none()),
        st.tuples(st.just("create"), st.sampled_from(KEYS), st.none()),
        st.tuples(st.just("create_fail"), st.sampled_from(KEYS), st.none()),
        st.tuples(st.just("touch"), st.integers(0, 5), st.none()),
        st.tuples(st.just("begin"), st.integers(0, 5), st.none()),
        st.tuples(st.just("end"), st.integers(0, 5), st.none()),
        st.tuples(st.just("open"), st.integers(0, 5), st.none()),
        st.tuples(st.just("close_stream"), st.integers(0, 5), st.none()),
        st.tuples(st.just("delete"), st.integers(0, 5), st.none()),
        # Whole seconds that land exactly on windows and deadlines.
        st.tuples(st.just("sleep"), st.sampled_from([1, 2, 3, 5, 7, 10, 20, 25]), st.none()),
    ),
    min_size=10,
    max_size=60,
)


def run_model(policy: EvictionPolicy, ops: list[tuple[str, Any, Any]]) -> None:
    server = McpServer("model")
    releases: dict[int, trio.Event] = {}

    @server.tool()
    async def block(n: int) -> str:
        """Waits until the test releases it."""
        await releases[n].wait()
        return "released"

    @server.on_initialize
    def maybe_fail(client: Any, is_restored: bool) -> None:
        if client.client_info.get("name") == "fail":
            raise McpError(-32602, "refused")

    closed: list[tuple[str, CloseReason]] = []
    limits = SessionLimits(
        max_sessions=MAX_SESSIONS,
        eviction=policy,
        idle_timeout=IDLE,
        init_timeout=INIT,
        max_lifetime=LIFETIME,
        rate_limit_per_client=PER_CLIENT,
    )

    async def main() -> None:
        model: list[ModelSession] = []  # creation order
        idle_order: list[str] = []  # least recently active idle session first
        stamps: dict[str, list[float]] = {key: [] for key in KEYS}
        counter = 0

        def mark_activity(s: ModelSession) -> None:
            s.last_activity = trio.current_time()
            if s.session_id in idle_order:
                idle_order.remove(s.session_id)
            if not s.busy:
                idle_order.append(s.session_id)

        def mark_busy(s: ModelSession) -> None:
            if s.session_id in idle_order:
                idle_order.remove(s.session_id)

        def forget(s: ModelSession) -> None:
            model.remove(s)
            if s.session_id in idle_order:
                idle_order.remove(s.session_id)
            for _, stream in s.requests:
                stream.detach()
            for stream in s.streams:
                stream.detach()

        async with BoundedSessionManager(
            server,
            limits=limits,
            on_session_closed=lambda sid, reason: closed.append((sid, reason)),
        ) as manager:

            def check_invariants() -> None:
                stats = manager.statistics()
                assert stats.live_sessions <= MAX_SESSIONS
                assert stats.slots_held == stats.live_sessions
                # The live sessions are exactly the model's: each of its ids is
                # live, and there are no others.
                assert all(manager.get_session(s.session_id) is not None for s in model)
                assert stats.live_sessions == len(model)

            for op, arg, _ in ops:
                now = trio.current_time()
                if op in ("create", "create_fail"):
                    key = arg
                    window = [t for t in stamps[key] if t > now - PER_CLIENT.window]
                    stamps[key] = window
                    expect_rate_limited = len(window) >= PER_CLIENT.max_creations
                    at_cap = len(model) >= MAX_SESSIONS
                    expected_victim: ModelSession | None = None
                    if at_cap and policy is EvictionPolicy.LEAST_RECENTLY_ACTIVE and idle_order:
                        expected_victim = next(s for s in model if s.session_id == idle_order[0])
                    elif at_cap and policy is EvictionPolicy.OLDEST:
                        expected_victim = model[0]
                    closed.clear()
                    info = RequestInfo(client_address=key)
                    try:
                        session_id = await manager.create_session(info)
                    except RateLimited as exc:
                        retry_after = exc.retry_after
                        assert expect_rate_limited
                        assert retry_after == max(1, math.ceil(window[0] + PER_CLIENT.window - now))
                        check_invariants()
                        continue
                    except TooManySessions:
                        assert not expect_rate_limited
                        assert at_cap
                        assert expected_victim is None
                        check_invariants()
                        continue
                    assert not expect_rate_limited
                    if at_cap:
                        assert expected_victim is not None
                        assert closed == [(expected_victim.session_id, CloseReason.EVICTED)]
                        if policy is EvictionPolicy.LEAST_RECENTLY_ACTIVE:
                            assert not expected_victim.busy
                        forget(expected_victim)
                    name = "fail" if op == "create_fail" else "ok"
                    request = Request(
                        1,
                        "initialize",
                        {
                            "protocolVersion": "2025-11-25",
                            "capabilities": {},
                            "clientInfo": {"name": name},
                        },
                    )
                    reply = await manager.initialize_session(
                        session_id, request, parse_initialize(request), info
                    )
                    if op == "create_fail":
                        assert manager.get_session(session_id) is None
                        # Its rate-limit token came back: nothing recorded.
                    else:
                        assert not hasattr(reply, "code")
                        stamps[key].append(now)
                        s = ModelSession(session_id, now, now)
                        model.append(s)
                        mark_activity(s)
                elif op == "sleep":
                    before = list(model)
                    await trio.sleep(arg)
                    await trio.testing.wait_all_tasks_blocked()
                    now = trio.current_time()
                    for s in before:
                        if s.deadline() <= now:
                            assert (s.session_id, s.expiry_reason()) in closed, (s, closed)
                            forget(s)
                        else:
                            assert manager.get_session(s.session_id) is not None
                    closed.clear()
                elif model:
                    s = model[arg % len(model)]
                    sid = s.session_id
                    if op == "touch":
                        await manager.accept_messages(
                            sid, [Notification("notifications/initialized")], RequestInfo()
                        )
                        s.seen_use = True
                        mark_activity(s)
                    elif op == "begin":
                        counter += 1
                        releases[counter] = trio.Event()
                        stream = await manager.create_stream(
                            sid,
                            [
                                Request(
                                    counter,
                                    "tools/call",
                                    {"name": "block", "arguments": {"n": counter}},
                                )
                            ],
                            RequestInfo(),
                            "sse",
                        )
                        s.requests.append((counter, stream))
                        s.seen_use = True
                        mark_busy(s)
                    elif op == "end" and s.requests:
                        n, stream = s.requests.pop(0)
                        releases[n].set()
                        events = [e async for e in stream]
                        assert b"released" in events[-1].data
                        stream.detach()
                        await trio.testing.wait_all_tasks_blocked()
                        mark_activity(s)
                    elif op == "open" and not s.streams:
                        standalone = await manager.create_standalone_stream(sid)
                        assert standalone is not None
                        s.streams.append(standalone)
                        s.seen_use = True
                        mark_busy(s)
                    elif op == "close_stream" and s.streams:
                        s.streams.pop().detach()
                        mark_activity(s)
                    elif op == "delete":
                        await manager.close_session(sid, CloseReason.DELETED)
                        assert closed[-1] == (sid, CloseReason.DELETED)
                        forget(s)
                        closed.clear()
                check_invariants()
            for n, event in releases.items():
                del n
                event.set()
        assert manager.statistics().slots_held == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy=st.sampled_from(list(EvictionPolicy)), ops=operations)
# Hand-picked corners, run on every test run besides the random ones:
# a busy session reaches its max lifetime;
@example(
    policy=EvictionPolicy.LEAST_RECENTLY_ACTIVE,
    ops=[("create", KEYS[0], None), ("begin", 0, None), ("sleep", 25, None), ("sleep", 25, None)],
)
# a window frees its slot exactly `window` seconds after the oldest creation;
@example(
    policy=EvictionPolicy.REJECT,
    ops=[
        *[("create", KEYS[0], None)] * 3,
        ("touch", 0, None),
        ("touch", 1, None),
        ("touch", 2, None),
        ("create", KEYS[0], None),
        ("sleep", 5, None),
        ("create", KEYS[0], None),
        ("sleep", 5, None),
        ("delete", 0, None),
        ("create", KEYS[0], None),
    ],
)
# at the cap the least recently active *idle* session goes, never a busy one.
@example(
    policy=EvictionPolicy.LEAST_RECENTLY_ACTIVE,
    ops=[
        ("create", KEYS[0], None),
        ("create", KEYS[1], None),
        ("create", KEYS[0], None),
        ("begin", 0, None),
        ("sleep", 1, None),
        ("touch", 1, None),
        ("create", KEYS[1], None),
        ("open", 0, None),
        ("create", KEYS[1], None),
        ("create", KEYS[1], None),
    ],
)
def test_manager_matches_the_model(policy: EvictionPolicy, ops: list[tuple[str, Any, Any]]) -> None:
    run_model(policy, ops)
