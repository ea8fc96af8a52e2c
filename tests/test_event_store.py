"""The bounded in-memory event store, on trio's mock clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trio_mcp_sessions import EventsPurged, EventStore, InMemoryEventStore, SqliteEventStore
from trio_mcp_sessions._stores._base import NonBlockingEventStore, as_nonblocking

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from trio_mcp_sessions import StoredEvent


async def test_replay_is_exclusive_and_per_stream() -> None:
    store = InMemoryEventStore()
    assert isinstance(store, EventStore)
    for seq in (1, 2, 3):
        await store.append("s1", "a", seq, b"a%d" % seq)
    await store.append("s1", "b", 1, b"b1")
    assert [e.seq for e in await store.replay_after("s1", "a", 1)] == [2, 3]
    assert [e.data for e in await store.replay_after("s1", "a", 0)] == [b"a1", b"a2", b"a3"]
    assert await store.replay_after("s1", "a", 3) == []
    assert [e.data for e in await store.replay_after("s1", "b", 0)] == [b"b1"]


async def test_sessions_never_see_each_other() -> None:
    store = InMemoryEventStore()
    await store.append("s1", "a", 1, b"secret")
    assert list(await store.replay_after("s2", "a", 0)) == []


async def test_sequence_numbers_must_grow() -> None:
    store = InMemoryEventStore()
    await store.append("s", "a", 2, b"x")
    with pytest.raises(ValueError, match="grow"):
        await store.append("s", "a", 2, b"y")


async def test_count_bound_makes_a_gap_explicit() -> None:
    store = InMemoryEventStore(max_events_per_session=3)
    for seq in range(1, 6):
        await store.append("s", "a", seq, b"x")
    assert [e.seq for e in await store.replay_after("s", "a", 2)] == [3, 4, 5]
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "a", 1)
    assert store.statistics() == (1, 3, 3)


async def test_byte_bound_drops_the_oldest_across_streams() -> None:
    store = InMemoryEventStore(max_bytes_per_session=10)
    await store.append("s", "old", 1, b"12345")
    await store.append("s", "new", 1, b"12345")
    await store.append("s", "new", 2, b"1")
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "old", 0)
    assert [e.seq for e in await store.replay_after("s", "new", 0)] == [1, 2]


async def test_age_bound(autojump_clock: trio.testing.MockClock) -> None:
    store = InMemoryEventStore(max_age=60)
    await store.append("s", "a", 1, b"x")
    await trio.sleep(30)
    await store.append("s", "a", 2, b"y")
    await trio.sleep(31)
    with pytest.raises(EventsPurged):
        await store.replay_after("s", "a", 0)
    assert [e.seq for e in await store.replay_after("s", "a", 1)] == [2]
    await trio.sleep(60)
    # Everything expired and the stream is forgotten altogether.
    assert list(await store.replay_after("s", "a", 2)) == []
    assert store.statistics()[1:] == (0, 0)


async def test_delete_session() -> None:
    store = InMemoryEventStore()
    await store.append("s", "a", 1, b"x")
    await store.delete_session("s")
    assert list(await store.replay_after("s", "a", 0)) == []
    assert store.statistics() == (0, 0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_events_per_session": 0}, {"max_bytes_per_session": 0}, {"max_age": 0}],
)
def test_invalid_bounds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        InMemoryEventStore(**kwargs)  # type: ignore[arg-type]


class _AsyncOnly:
    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None: ...

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        return ()

    async def delete_session(self, session_id: str) -> None: ...


class _AppendNowaitOnly(_AsyncOnly):
    def append_nowait(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None: ...


def test_non_blocking_means_both_nowait_calls(tmp_path: Path) -> None:
    """The one check sessions and the manager make agrees with the Protocol."""
    memory = InMemoryEventStore()
    assert as_nonblocking(memory) is memory
    stores = [memory, SqliteEventStore(tmp_path / "events.db"), _AsyncOnly(), _AppendNowaitOnly()]
    for store in stores:
        assert isinstance(store, EventStore)
        expected = store if isinstance(store, NonBlockingEventStore) else None
        assert as_nonblocking(store) is expected, store
    assert as_nonblocking(None) is None
