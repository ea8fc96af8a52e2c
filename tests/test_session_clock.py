"""The session clock, sans-IO: deadlines and close reasons from plain numbers."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions._protocol._clock import SessionClock


def test_an_unused_session_has_the_init_timeout_from_creation() -> None:
    clock = SessionClock(100.0, idle_timeout=600, init_timeout=60)
    assert not clock.busy
    assert clock.deadline() == 160
    clock.activity(150)  # activity before first use does not extend it
    assert clock.deadline() == 160
    assert clock.expiry_reason(160) == "init_timeout"


def test_after_first_use_the_idle_timeout_counts_from_the_last_activity() -> None:
    clock = SessionClock(0.0, idle_timeout=30, init_timeout=60)
    clock.use(20)
    assert clock.deadline() == 50
    for now in (40, 60, 80):
        clock.activity(now)
    assert clock.deadline() == 110  # TTL 30, activity at 20, 40, 60, 80
    assert clock.expiry_reason(110) == "idle"


def test_a_busy_session_never_idles_out_but_its_lifetime_still_ends_it() -> None:
    clock = SessionClock(0.0, idle_timeout=30, init_timeout=60, max_lifetime=1000)
    clock.use(1)
    clock.inflight += 1
    assert clock.busy
    assert clock.deadline() == 1000
    clock.inflight -= 1
    clock.streams += 1
    assert clock.deadline() == 1000
    clock.streams -= 1
    clock.activity(5)
    assert clock.deadline() == 35
    assert clock.expiry_reason(1000) == "max_lifetime"


def test_without_a_lifetime_a_busy_session_has_no_deadline() -> None:
    clock = SessionClock(0.0, idle_timeout=30, init_timeout=60)
    clock.streams = 1
    assert clock.deadline() == math.inf
    assert clock.expires_at == math.inf


@given(
    created=st.floats(0, 1e6),
    idle=st.floats(0.1, 1e4),
    init=st.floats(0.1, 1e4),
    lifetime=st.one_of(st.none(), st.floats(0.1, 1e5)),
    used=st.booleans(),
    since=st.floats(0, 1e4),
    inflight=st.integers(0, 3),
    streams=st.integers(0, 3),
)
def test_the_deadline_is_the_idle_rule(
    created: float,
    idle: float,
    init: float,
    lifetime: float | None,
    used: bool,
    since: float,
    inflight: int,
    streams: int,
) -> None:
    clock = SessionClock(created, idle_timeout=idle, init_timeout=init, max_lifetime=lifetime)
    if used:
        clock.use(created + since)
    clock.inflight, clock.streams = inflight, streams
    end = created + lifetime if lifetime is not None else math.inf
    deadline = clock.deadline()
    assert deadline <= end
    if inflight or streams:
        assert deadline == end
    elif used:
        assert deadline == min(created + since + idle, end)
    else:
        assert deadline == min(created + init, end)
    if deadline < math.inf:
        reason = clock.expiry_reason(deadline)
        if deadline >= end:
            assert reason == "max_lifetime"
        else:
            assert reason == ("idle" if used else "init_timeout")
