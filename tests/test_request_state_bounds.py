"""The bounds of input-required rounds: total pending time, and the size of what is echoed.

``ttl`` counts from the last sealing, so without ``max_pending`` a request
could stay open for ``max_rounds`` times ``ttl``. The origin of round 1 rides
(under the MAC) in every round's state. Sans-IO with plain numbers and
hypothesis; then the sessionless service on trio's clock.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from test_sessionless import answer, modern, running
from trio_mcp_sessions import Context, McpServer, RequestStateCodec, StreamableHTTPApp
from trio_mcp_sessions._protocol._request_state import (
    InvalidRequestState,
    PendingTooLong,
    RequestStateBinding,
    UsedStates,
    json_size_over,
)

if TYPE_CHECKING:
    from trio_mcp_sessions._stateless import SessionlessService

K1 = b"\x01" * 32
B = RequestStateBinding(principal=None, method="tools/call", name="t")


def reason(codec: RequestStateCodec, token: str, now: float, **kw: Any) -> str | None:
    try:
        codec.open(token, binding=B, now=now, **kw)
    except InvalidRequestState as exc:
        return exc.reason
    return None


# -- max_pending, sans-IO ------------------------------------------------------------------


def test_the_origin_of_round_one_bounds_every_later_round() -> None:
    codec = RequestStateCodec([K1], ttl=600, max_pending=900)
    first = codec.seal({}, binding=B, now=0.0, round=1)
    opened = codec.open(first, binding=B, now=500.0)
    assert (opened.origin, opened.expires_at) == (0.0, 600.0)
    second = codec.seal({}, binding=B, now=500.0, round=2, origin=opened.origin)
    again = codec.open(second, binding=B, now=900.0)  # the last instant
    assert (again.origin, again.issued_at, again.round) == (0.0, 500.0, 2)
    assert again.expires_at == 900.0  # max_pending comes first: ttl would say 1100
    assert reason(codec, second, 900.5) == "pending_too_long"
    with pytest.raises(PendingTooLong, match="max_pending=900 s; call it again without"):
        codec.seal({}, binding=B, now=900.5, round=3, origin=0.0)
    # The TTL still applies on its own, and a first round starts its own clock.
    assert reason(RequestStateCodec([K1], ttl=60, max_pending=900), second, 561.0) == "expired"
    fresh = codec.seal({}, binding=B, now=2000.0, round=1)
    assert codec.open(fresh, binding=B, now=2000.0).origin == 2000.0


def test_a_token_is_remembered_for_replay_only_until_it_can_no_longer_open() -> None:
    codec = RequestStateCodec([K1], ttl=600, max_pending=700)
    used = UsedStates(max_entries=1)
    token = codec.seal({}, binding=B, now=400.0, round=2, origin=100.0)
    assert codec.open(token, binding=B, now=401.0, used=used).expires_at == 800.0
    assert reason(codec, token, 402.0, used=used) == "replayed"
    # Past 800 s the nonce is dropped (the token is dead anyway): room for another.
    other = codec.seal({}, binding=B, now=801.0, round=1)
    assert codec.open(other, binding=B, now=801.0, used=used).round == 1


def test_a_lower_max_pending_applies_to_tokens_already_out() -> None:
    token = RequestStateCodec([K1], max_pending=3600).seal(
        {}, binding=B, now=500.0, round=3, origin=0.0
    )
    assert reason(RequestStateCodec([K1], max_pending=3600), token, 550.0) is None
    assert reason(RequestStateCodec([K1], max_pending=540), token, 550.0) == "pending_too_long"


def test_the_refusal_tells_the_client_to_start_again() -> None:
    error = InvalidRequestState("pending_too_long").to_protocol_error(3)
    assert error.code == -32602
    assert error.data == {"reason": "pending_too_long"}
    assert "without requestState to start over" in error.message


@pytest.mark.parametrize(
    "options",
    [
        {"max_pending": 0},
        {"max_pending": -1.0},
        {"max_pending": float("inf")},
        {"max_pending": float("nan")},
        {"max_input_bytes": 0},
    ],
)
def test_bad_bounds_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        RequestStateCodec([K1], **options)


@given(
    st.lists(st.floats(0, 700, allow_nan=False), min_size=1, max_size=8),
    st.floats(1, 2000, allow_nan=False),
)
def test_rounds_open_exactly_while_both_deadlines_hold(
    waits: list[float], max_pending: float
) -> None:
    """Model: a round opens iff ``now - last seal <= ttl`` and ``now - origin <= max_pending``."""
    ttl = 600.0
    codec = RequestStateCodec([K1], ttl=ttl, max_pending=max_pending, max_rounds=8, skew=0)
    now = 0.0
    token = codec.seal({}, binding=B, now=now, round=1)
    sealed_at, origin = now, now
    for round_, wait in enumerate(waits, start=2):
        now += wait
        expected = (
            "expired"
            if now - sealed_at > ttl
            else "pending_too_long"
            if now - origin > max_pending
            else None
        )
        got = reason(codec, token, now)
        assert got == expected
        if got is not None:
            return
        opened = codec.open(token, binding=B, now=now)
        assert opened.origin == origin
        assert opened.expires_at == min(sealed_at + ttl, origin + max_pending)
        if round_ > codec.max_rounds:
            return
        token = codec.seal({}, binding=B, now=now, round=round_, origin=opened.origin)
        sealed_at = now


# -- the size of what is echoed, sans-IO ---------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@given(JSON, st.integers(0, 400))
def test_json_size_over_is_the_compact_length_compared(value: Any, limit: int) -> None:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    assert json_size_over(value, limit) == (size > limit)


def test_json_size_over_stops_at_the_limit() -> None:
    # A long list is not encoded to its end once the limit is passed.
    seen = 0

    def items() -> Any:
        nonlocal seen
        for i in range(10**6):
            seen = i
            yield {"k": i}

    class Lazy(list[Any]):
        def __iter__(self) -> Any:
            return items()

        def __bool__(self) -> bool:
            return True

    assert json_size_over(Lazy(), 1000)
    assert seen < 200


# -- the service, on trio's clock ----------------------------------------------------------


def make_server() -> tuple[McpServer, list[str]]:
    server = McpServer("rounds")
    ran: list[str] = []

    @server.tool()
    async def two_steps(ctx: Context) -> str:
        """Asks twice."""
        ran.append("two_steps")
        first = await ctx.elicit("First?", {"type": "object"}, key="step1")
        second = await ctx.elicit("Second?", {"type": "object"}, key="step2")
        return f"{first['content']['v']}+{second['content']['v']}"

    @server.tool()
    async def slow_steps(ctx: Context) -> str:
        """Asks, works for 200 s, asks again."""
        ran.append("slow_steps")
        await ctx.elicit("First?", {"type": "object"}, key="step1")
        await trio.sleep(200)
        await ctx.elicit("Second?", {"type": "object"}, key="step2")
        return "done"

    return server, ran


ACCEPT = {"action": "accept", "content": {"v": "x"}}


async def call(service: SessionlessService, params: dict[str, Any]) -> dict[str, Any]:
    [reply] = await answer(service, modern("tools/call", params))
    return reply


@pytest.mark.parametrize("max_pending", [900.0, 3600.0])
async def test_a_request_pending_too_long_across_rounds_is_refused_with_a_clear_error(
    autojump_clock: trio.testing.MockClock, max_pending: float
) -> None:
    server, ran = make_server()
    codec = RequestStateCodec(ttl=600, max_pending=max_pending)
    async with running(server, request_states=codec, wall_clock=trio.current_time) as service:
        call_ = {"name": "two_steps", "arguments": {}}
        first = (await call(service, call_))["result"]
        await trio.sleep(500)  # within the TTL and the bound
        retry = {
            **call_,
            "requestState": first["requestState"],
            "inputResponses": {"step1": ACCEPT},
        }
        second = (await call(service, retry))["result"]
        assert list(second["inputRequests"]) == ["step2"]
        await trio.sleep(450)  # 450 s after round 2 (TTL ok), 950 s after round 1
        last = {
            **call_,
            "requestState": second["requestState"],
            "inputResponses": {"step2": ACCEPT},
        }
        reply = await call(service, last)
        if max_pending == 3600.0:  # the bound is what refuses: with room, it completes
            assert reply["result"]["content"][0]["text"] == "x+x"
            assert ran == ["two_steps"] * 3
            return
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"] == {"reason": "pending_too_long"}
        assert "call it again without requestState" in reply["error"]["message"]
        assert ran == ["two_steps"] * 2  # refused before the handler ran
        stats = service.statistics()
        assert (stats.refused_states, stats.refused_states_by_reason) == (
            1,
            {"pending_too_long": 1},
        )
        # Started again, it goes through.
        assert (await call(service, call_))["result"]["resultType"] == "input_required"


async def test_a_round_that_would_be_sealed_past_the_bound_is_an_error_not_a_dead_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ran = make_server()
    codec = RequestStateCodec(ttl=800, max_pending=900)
    async with running(  # the tool works 200 s: over the 60 s handler deadline
        server, request_states=codec, wall_clock=trio.current_time, request_timeout=300
    ) as service:
        call_ = {"name": "slow_steps", "arguments": {}}
        first = (await call(service, call_))["result"]
        await trio.sleep(750)
        retry = {
            **call_,
            "requestState": first["requestState"],
            "inputResponses": {"step1": ACCEPT},
        }
        reply = await call(service, retry)  # the handler asks again at 950 s
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"] == {"reason": "pending_too_long"}
        assert "max_pending=900 s" in reply["error"]["message"]
        assert ran == ["slow_steps"] * 2
        assert service.statistics().input_required == 1


async def test_oversized_echoes_are_refused_before_any_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server, ran = make_server()
    codec = RequestStateCodec(max_bytes=1024, max_input_bytes=512)
    async with running(server, request_states=codec, wall_clock=trio.current_time) as service:
        call_ = {"name": "two_steps", "arguments": {}}
        huge = {"step1": {"action": "accept", "content": {"v": "x" * 600}}}
        reply = await call(service, {**call_, "inputResponses": huge})
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"] == {"max_input_bytes": 512}
        assert "inputResponses is larger than this server accepts" in reply["error"]["message"]
        reply = await call(service, {**call_, "requestState": "rs1." + "A" * 2000})
        assert reply["error"]["data"] == {"reason": "too_large"}
        assert ran == []  # no handler ran for either
        stats = service.statistics()
        assert (stats.refused_inputs, stats.refused_states_by_reason) == (1, {"too_large": 1})
        # Just under the bound is fine.
        fits = {"step1": {"action": "accept", "content": {"v": "x" * 400}}}
        reply = await call(service, {**call_, "inputResponses": fits})
        assert list(reply["result"]["inputRequests"]) == ["step2"]


def test_the_command_line_sets_the_round_bounds() -> None:
    from trio_mcp_sessions._cli import _parser, request_states_from

    codec = request_states_from(_parser().parse_args(["serve", "m:s"]))
    assert (codec.max_pending, codec.max_input_bytes) == (900.0, 256 * 1024)
    args = _parser().parse_args(
        [
            "serve",
            "m:s",
            "--request-state-max-pending",
            "120",
            "--max-input-response-bytes",
            "4096",
        ]
    )
    codec = request_states_from(args)
    assert (codec.max_pending, codec.max_input_bytes) == (120.0, 4096)
    with pytest.raises(SystemExit, match="error: max_pending must be"):
        request_states_from(
            _parser().parse_args(["serve", "m:s", "--request-state-max-pending", "0"])
        )


async def test_over_http_the_refusals_are_400s_and_counted_in_the_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pytest.importorskip(
        "prometheus_client", reason="metrics need the [metrics] extra (in [dev]): prometheus-client"
    )
    from test_request_state_keys import CAPS, META, call
    from test_request_state_keys import make_server as asking_server
    from trio_mcp_sessions.testing import open_test_client

    app = StreamableHTTPApp(
        asking_server(),
        metrics_path="/metrics",
        request_states=RequestStateCodec(max_input_bytes=64),
    )
    async with open_test_client(app, protocol_version="2026-07-28", capabilities=CAPS) as client:
        params = {"_meta": META, "name": "ask", "arguments": {}}
        big = {"colour": {"action": "accept", "content": {"colour": "x" * 100}}}
        r = await call(client, {**params, "inputResponses": big})
        assert r.status == 400
        assert r.json()["error"]["data"] == {"max_input_bytes": 64}
        [first] = (await call(client, params)).messages
        token = first["result"]["requestState"]
        tampered = {**params, "requestState": token[:-1] + ("B" if token[-1] == "A" else "A")}
        assert (await call(client, tampered)).status == 400
        text = (await client.send("GET", path="/metrics")).body.decode().splitlines()
    for line in (
        "mcp_sessionless_refused_inputs_total 1.0",
        "mcp_sessionless_refused_request_states_total 1.0",
        'mcp_sessionless_request_states_refused_total{reason="tampered"} 1.0',
    ):
        assert line in text, line
