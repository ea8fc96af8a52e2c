"""The listen filter (sans-IO), the hub's bounds and the listen reply, without sockets.

The filter decides what a ``subscriptions/listen`` stream may carry, so its
rules are pinned here exactly and fuzzed: nothing a client did not ask for
ever matches, and hostile filters get -32602, never another error.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions import ListenLimits, ServiceUnavailable
from trio_mcp_sessions._protocol._jsonrpc import INVALID_PARAMS, ProtocolError
from trio_mcp_sessions._protocol._subscriptions import (
    CHANGE_METHODS,
    LIST_CHANGED,
    RESOURCE_UPDATED,
    SubscriptionFilter,
    acknowledgement,
    closing_result,
    tagged,
)
from trio_mcp_sessions._stateless._listen import ListenHub
from trio_mcp_sessions._transport._replies import KEEPALIVE_SECONDS, _reply_modern

if TYPE_CHECKING:
    from collections.abc import MutableMapping

SUB = "io.modelcontextprotocol/subscriptionId"
EVERYTHING = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
}


def parse(notifications: Any, *, max_uris: int = 3, max_uri_length: int = 16) -> SubscriptionFilter:
    return SubscriptionFilter.parse(
        {"notifications": notifications}, max_uris=max_uris, max_uri_length=max_uri_length
    )


# -- the filter --------------------------------------------------------------------------


def test_a_filter_matches_exactly_what_it_asked_for() -> None:
    f = parse(
        {"toolsListChanged": True, "promptsListChanged": False, "resourceSubscriptions": ["a"]}
    )
    assert f.wants("notifications/tools/list_changed", None)
    assert not f.wants("notifications/prompts/list_changed", None)
    assert not f.wants("notifications/resources/list_changed", None)
    assert f.wants(RESOURCE_UPDATED, {"uri": "a"})
    assert not f.wants(RESOURCE_UPDATED, {"uri": "a/sub"})
    assert not f.wants(RESOURCE_UPDATED, {"uri": 1})
    assert not f.wants(RESOURCE_UPDATED, None)
    for never in ("notifications/progress", "notifications/message", "notifications/cancelled"):
        assert not f.wants(never, {"uri": "a"})


def test_the_honoured_subset_is_what_the_capabilities_declare() -> None:
    asked = parse(
        {
            "toolsListChanged": True,
            "promptsListChanged": True,
            "resourcesListChanged": True,
            "resourceSubscriptions": ["a", "b", "a"],
        }
    )
    assert asked.honoured(EVERYTHING) == asked
    assert asked.to_json() == {
        "toolsListChanged": True,
        "promptsListChanged": True,
        "resourcesListChanged": True,
        "resourceSubscriptions": ["a", "b"],
    }
    tools_only = asked.honoured({"tools": {"listChanged": True}, "resources": {}, "logging": {}})
    assert tools_only.to_json() == {"toolsListChanged": True}
    no_subscribe = asked.honoured({"resources": {"listChanged": True}})
    assert no_subscribe.to_json() == {"resourcesListChanged": True}
    assert parse({}).honoured(EVERYTHING).to_json() == {}


@pytest.mark.parametrize(
    ("notifications", "needle"),
    [
        (None, "must be an object"),
        ([], "must be an object"),
        ({"toolsListChanged": 1}, "must be a boolean"),
        ({"resourceSubscriptions": "a"}, "list of strings"),
        ({"resourceSubscriptions": ["a", 2]}, "list of strings"),
        ({"resourceSubscriptions": ["a", "b", "c", "d"]}, "at most 3"),
        ({"resourceSubscriptions": ["x" * 17]}, "longer than 16"),
    ],
)
def test_a_bad_filter_is_invalid_params(notifications: Any, needle: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse(notifications)
    assert caught.value.code == INVALID_PARAMS
    assert needle in caught.value.message


def test_repeated_uris_count_once_against_the_bound() -> None:
    assert parse({"resourceSubscriptions": ["a", "a", "a", "a", "b"]}).uris == ("a", "b")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=24), inner, max_size=4)
    ),
    max_leaves=12,
)
FILTER_FIELDS = st.sampled_from([*LIST_CHANGED.values(), "resourceSubscriptions", "other"])


@given(
    st.dictionaries(FILTER_FIELDS, JSON | st.lists(st.text(max_size=20), max_size=5), max_size=5),
    st.sampled_from(sorted(CHANGE_METHODS | {"notifications/message", "notifications/progress"})),
    st.text(max_size=20),
)
def test_hostile_filters_are_refused_cleanly_and_never_widen(
    notifications: dict[str, Any], method: str, uri: str
) -> None:
    refused: int | None
    try:
        f = parse(notifications, max_uris=5, max_uri_length=20)
    except ProtocolError as exc:
        refused = exc.code
    else:
        refused = None
    if refused is not None:
        assert refused == INVALID_PARAMS
        return
    params = {"uri": uri}
    if f.wants(method, params):
        field = LIST_CHANGED.get(method)
        if field is not None:
            assert notifications.get(field) is True
        else:
            assert method == RESOURCE_UPDATED
            assert uri in notifications["resourceSubscriptions"]
    honoured = f.honoured(EVERYTHING)
    assert not honoured.wants(method, params) or f.wants(method, params)
    # The acknowledgement is what a client may read back as a filter.
    assert parse(honoured.to_json(), max_uris=5, max_uri_length=20) == honoured


def test_the_frames_carry_the_subscription_id_and_keep_a_senders_meta() -> None:
    f = parse({"toolsListChanged": True})
    assert acknowledgement(0, f).to_json() == {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {SUB: 0}, "notifications": {"toolsListChanged": True}},
    }
    params = {"uri": "a", "_meta": {"x": 1}}
    assert tagged(RESOURCE_UPDATED, params, "s").params == {
        "uri": "a",
        "_meta": {"x": 1, SUB: "s"},
    }
    assert params == {"uri": "a", "_meta": {"x": 1}}  # the broadcast's own params stay
    assert closing_result(5).to_json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "result": {"resultType": "complete", "_meta": {SUB: 5}},
    }


# -- the hub ---------------------------------------------------------------------------


def frames(stream: Any) -> list[Any]:
    return [json.loads(event.data) for event in stream.take_ready()]


def test_the_cap_refuses_before_anything_is_held_and_a_detach_frees_a_slot() -> None:
    hub = ListenHub(ListenLimits(max_streams=2))
    f = parse({"toolsListChanged": True})
    first, second = hub.open(1, f, now=0.0), hub.open(2, f, now=0.0)
    with pytest.raises(ServiceUnavailable, match="at most 2"):
        hub.open(3, f, now=0.0)
    assert hub.statistics().refused == 1
    first.detach()
    assert hub.statistics().open_streams == 1
    hub.open(4, f, now=0.0)
    assert hub.deliver("notifications/tools/list_changed", None) == 2
    assert [m["method"] for m in frames(second)] == [
        "notifications/subscriptions/acknowledged",
        "notifications/tools/list_changed",
    ]


def test_a_full_backlog_ends_the_stream_after_what_it_holds() -> None:
    hub = ListenHub(ListenLimits(max_buffered_events=3))
    stream = hub.open("s", parse({"toolsListChanged": True}), now=0.0)  # the ack is one of the 3
    assert hub.deliver("notifications/tools/list_changed", {"n": 1}) == 1
    assert hub.deliver("notifications/tools/list_changed", {"n": 2}) == 1
    assert hub.deliver("notifications/tools/list_changed", {"n": 3}) == 0  # full: ended
    assert hub.deliver("notifications/tools/list_changed", {"n": 4}) == 0  # gone
    assert stream.ended
    got = frames(stream)
    assert [m.get("params", {}).get("n") for m in got[1:3]] == [1, 2]
    assert got[-1] == {
        "jsonrpc": "2.0",
        "id": "s",
        "result": {"resultType": "complete", "_meta": {SUB: "s"}},
    }
    stats = hub.statistics()
    assert (stats.open_streams, stats.ended_slow, stats.closed_by_server) == (0, 1, 1)


def test_close_all_ends_every_stream_and_refuses_new_ones() -> None:
    hub = ListenHub()
    streams = [hub.open(i, parse({}), now=0.0) for i in range(3)]
    gone = hub.open(9, parse({}), now=0.0)
    gone.detach()  # a client that left gets nothing more
    hub.close_all()
    hub.close_all()
    assert all(s.ended for s in streams)
    assert [len(frames(s)) for s in streams] == [2, 2, 2]
    with pytest.raises(ServiceUnavailable):
        hub.open(5, parse({}), now=0.0)
    assert hub.statistics().closed_by_server == 3


@pytest.mark.parametrize(
    "bad", [{"max_streams": 0}, {"max_buffered_events": 0}, {"max_buffered_bytes": -1}]
)
def test_listen_limits_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ListenLimits(**bad)
    with pytest.raises(TypeError):
        ListenLimits(max_streams=True)


# -- the reply: keep-alive, on trio's clock --------------------------------------------------


async def test_a_quiet_listen_stream_gets_a_keepalive_every_15_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = ListenHub()
    stream = hub.open(1, parse({"toolsListChanged": True}), now=0.0)
    sent: list[tuple[float, bytes]] = []

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append((trio.current_time(), message["body"]))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(_reply_modern, receive, send, stream, lambda: 200, sse=True))
        await trio.sleep(2 * KEEPALIVE_SECONDS + 1)
        hub.deliver("notifications/tools/list_changed", None)
        await trio.sleep(1)
        hub.close_all()
    times = [round(t - start) for t, _ in sent]
    bodies = [body for _, body in sent]
    assert b"acknowledged" in bodies[0]
    assert bodies[1:3] == [b": keep-alive\n\n"] * 2
    assert times[1:3] == [15, 30]
    assert b"tools/list_changed" in bodies[3]
    assert b'"resultType":"complete"' in bodies[4]
    assert hub.statistics().open_streams == 0


def test_the_command_line_sets_the_listen_limits() -> None:
    from trio_mcp_sessions._cli import _parser, listen_limits_from

    args = _parser().parse_args(["serve", "m:s"])
    assert listen_limits_from(args) == ListenLimits()
    args = _parser().parse_args(
        ["serve", "m:s", "--max-listen-streams", "5", "--listen-buffer", "7"]
    )
    assert listen_limits_from(args) == ListenLimits(max_streams=5, max_buffered_events=7)
    args = _parser().parse_args(["serve", "m:s", "--max-listen-streams", "0"])
    with pytest.raises(SystemExit, match="error: max_streams must be at least 1"):
        listen_limits_from(args)
