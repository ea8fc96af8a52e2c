"""The in-memory event store's bounds hold exactly, and age expiry needs no append."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions import EventsPurged, InMemoryEventStore

MiB = 1 << 20


async def test_oversized_events_become_gaps_and_the_byte_bound_holds() -> None:
    store = InMemoryEventStore()  # 1 MiB per session
    big = b"x" * (4 * MiB)
    for n in range(20):
        await store.append(f"s{n}", "a", 1, b"small")
        await store.append(f"s{n}", "a", 2, big)
        await store.append(f"s{n}", "a", 3, b"after")
    sessions, events, held = store.statistics()
    # Before: the newest event was always kept, 20 x 4 MB held.
    assert held <= 20 * MiB
    assert held == 20 * len(b"smallafter")
    assert (sessions, events) == (20, 40)
    with pytest.raises(EventsPurged, match="no longer stored"):
        await store.replay_after("s0", "a", 0)  # would need the big one
    with pytest.raises(EventsPurged):
        await store.replay_after("s0", "a", 1)
    assert [e.data for e in await store.replay_after("s0", "a", 2)] == [b"after"]
    with pytest.raises(ValueError, match="grow"):
        await store.append("s0", "a", 2, b"again")  # the marker's number counts


async def test_an_oversized_first_event_is_remembered_as_a_gap() -> None:
    store = InMemoryEventStore(max_bytes_per_session=10)
    await store.append("s", "a", 1, b"x" * 11)
    assert store.statistics() == (1, 0, 0)
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "a", 0)
    assert list(await store.replay_after("s", "a", 1)) == []


async def test_a_dropped_older_event_does_not_hide_a_newer_gap() -> None:
    store = InMemoryEventStore(max_events_per_session=2, max_bytes_per_session=10)
    await store.append("s", "a", 1, b"1")
    await store.append("s", "a", 2, b"x" * 11)  # gap through 2
    await store.append("s", "a", 3, b"3")
    await store.append("s", "a", 4, b"4")  # drops event 1: the gap stays through 2
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "a", 1)
    assert [e.seq for e in await store.replay_after("s", "a", 2)] == [3, 4]


async def test_age_expiry_does_not_wait_for_the_sessions_next_append(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryEventStore(max_age=60)
    for n in range(200):
        await store.append(f"idle{n}", "a", 1, b"x" * 1000)
    await trio.sleep(61)
    # Nobody appends to the idle sessions again; any call sweeps them.
    await store.append("busy", "a", 1, b"y")
    await store.replay_after("busy", "a", 0)
    await store.replay_after("busy", "a", 0)
    await store.replay_after("busy", "a", 0)
    assert store.statistics() == (201, 1, 1)  # their events went (the gaps stay known)
    with pytest.raises(EventsPurged):
        await store.replay_after("idle0", "a", 0)


async def test_statistics_alone_expires(autojump_clock: trio.testing.MockClock) -> None:
    store = InMemoryEventStore(max_age=10)
    await store.append("s", "a", 1, b"abc")
    assert store.statistics() == (1, 1, 3)
    await trio.sleep(11)
    assert store.statistics()[1:] == (0, 0)


async def test_deleted_sessions_do_not_pile_up_in_the_sweep() -> None:
    store = InMemoryEventStore()
    for n in range(1000):
        await store.append(f"s{n}", "a", 1, b"x")
        await store.delete_session(f"s{n}")
    assert store.statistics() == (0, 0, 0)
    assert len(store._by_age) <= 64 + 1


@given(
    max_events=st.integers(1, 5),
    max_bytes=st.integers(1, 50),
    appends=st.lists(
        st.tuples(st.sampled_from(["s1", "s2"]), st.sampled_from("ab"), st.integers(0, 80)),
        max_size=60,
    ),
)
def test_bounds_hold_after_every_append(
    max_events: int, max_bytes: int, appends: list[tuple[str, str, int]]
) -> None:
    async def main() -> None:
        store = InMemoryEventStore(
            max_events_per_session=max_events, max_bytes_per_session=max_bytes
        )
        seqs: dict[tuple[str, str], int] = {}
        for session_id, stream_id, size in appends:
            seq = seqs[session_id, stream_id] = seqs.get((session_id, stream_id), 0) + 1
            await store.append(session_id, stream_id, seq, b"z" * size)
            for name in ("s1", "s2"):
                held = store._sessions.get(name)
                if held is not None:
                    assert len(held.order) <= max_events
                    assert held.bytes <= max_bytes
            # Whatever replays comes without a hole, up to the newest.
            try:
                replay = await store.replay_after(session_id, stream_id, 0)
            except EventsPurged:
                continue
            assert [e.seq for e in replay] == list(range(1, seq + 1))

    trio.run(main)
