"""What only the SQLite stores do: survive restarts, share a file, fail as StoreUnavailable.

The behaviour every store shares is in ``test_store_contract.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_mcp_sessions import (
    EventsPurged,
    EventStore,
    SessionRecord,
    SessionStore,
    SqliteEventStore,
    SqliteSessionStore,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


def record(session_id: str = "s1", **changes: Any) -> SessionRecord:
    base: dict[str, Any] = {
        "session_id": session_id,
        "protocol_version": "2025-11-25",
        "initialize_params": {"protocolVersion": "2025-11-25", "capabilities": {}},
        "principal": "alice",
        "created_at": 1000.0,
        "last_activity": 1001.0,
    }
    base.update(changes)
    return SessionRecord(**base)


@contextlib.contextmanager
def raw(path: Path) -> Any:
    """A plain connection to look behind the stores' back."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


async def test_restart_keeps_events_gaps_and_records(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with (
        SqliteEventStore(path, max_events_per_session=3) as events,
        SqliteSessionStore(path) as sessions,
    ):
        assert isinstance(events, EventStore)
        assert isinstance(sessions, SessionStore)
        for seq in range(1, 6):
            await events.append("s1", "a", seq, b"a%d" % seq)
        await sessions.save(record(), ttl=3600)

    # A new process on the same file: same events, same gap, same record.
    async with SqliteEventStore(path) as events, SqliteSessionStore(path) as sessions:
        assert [e.data for e in await events.replay_after("s1", "a", 2)] == [b"a3", b"a4", b"a5"]
        with pytest.raises(EventsPurged):
            await events.replay_after("s1", "a", 1)
        with pytest.raises(ValueError, match="grow"):
            await events.append("s1", "a", 5, b"again")
        await events.append("s1", "a", 6, b"a6")
        assert [e.seq for e in await events.replay_after("s1", "a", 4)] == [5, 6]
        assert await sessions.load("s1") == record()

    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_age_bound(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    store = SqliteEventStore(tmp_path / "e.db", max_age=60, clock=trio.current_time)
    async with store:
        await store.append("s", "a", 1, b"x")
        await trio.sleep(30)
        await store.append("s", "a", 2, b"y")
        await trio.sleep(31)
        with pytest.raises(EventsPurged):
            await store.replay_after("s", "a", 0)
        assert [e.seq for e in await store.replay_after("s", "a", 1)] == [2]
        await trio.sleep(60)
        # Everything aged out, but the stream still knows what it lost.
        assert list(await store.replay_after("s", "a", 2)) == []
        with pytest.raises(EventsPurged, match=r"2\.\.2"):
            await store.replay_after("s", "a", 1)


async def test_age_sweep_covers_sessions_nobody_touches(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "e.db"
    async with SqliteEventStore(path, max_age=60, clock=trio.current_time) as store:
        await store.append("abandoned", "a", 1, b"x" * 100)
        await trio.sleep(61)
        await store.append("other", "a", 1, b"y")
        with raw(path) as conn:
            assert conn.execute("SELECT session_id FROM mcp_events").fetchall() == [("other",)]
        with pytest.raises(EventsPurged):
            await store.replay_after("abandoned", "a", 0)


async def test_byte_bound_drops_the_oldest_across_streams(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "e.db", max_bytes_per_session=10) as store:
        await store.append("s", "old", 1, b"12345")
        await store.append("s", "new", 1, b"12345")
        await store.append("s", "new", 2, b"1")
        with pytest.raises(EventsPurged):
            await store.replay_after("s", "old", 0)
        assert [e.seq for e in await store.replay_after("s", "new", 0)] == [1, 2]
        # Another session's budget is its own.
        await store.append("t", "a", 1, b"1234567890")
        assert [e.seq for e in await store.replay_after("s", "new", 0)] == [1, 2]
        # One event larger than the bound is not stored: a gap, and nothing
        # else is pushed out for it.
        await store.append("s", "big", 1, b"x" * 50)
        with pytest.raises(EventsPurged):
            await store.replay_after("s", "big", 0)
        assert [e.seq for e in await store.replay_after("s", "new", 0)] == [1, 2]
        await store.append("s", "big", 2, b"ok")
        assert [e.data for e in await store.replay_after("s", "big", 1)] == [b"ok"]
        with pytest.raises(ValueError, match="grow"):
            await store.append("s", "big", 1, b"again")


async def test_concurrent_appends_all_land(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "e.db") as store:

        async def writer(stream: int) -> None:
            for seq in range(1, 11):
                await store.append("s", f"stream-{stream}", seq, b"%d:%d" % (stream, seq))

        async with trio.open_nursery() as nursery:
            for stream in range(20):
                nursery.start_soon(writer, stream)
        for stream in range(20):
            replay = await store.replay_after("s", f"stream-{stream}", 0)
            assert [e.data for e in replay] == [b"%d:%d" % (stream, seq) for seq in range(1, 11)]


async def test_event_and_session_stores_share_a_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SqliteEventStore(path) as events, SqliteSessionStore(path) as sessions:

        async def write_events() -> None:
            for seq in range(1, 31):
                await events.append("s1", "a", seq, b"e")

        async def write_records() -> None:
            for n in range(30):
                await sessions.save(record(f"r{n}"), ttl=60)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_events)
            nursery.start_soon(write_records)
        assert len(await events.replay_after("s1", "a", 0)) == 30
        assert await sessions.load("r29") == record("r29")


async def _append_one(store: Any) -> None:
    await store.append("s", "a", 1, b"x")


async def _load_one(store: Any) -> None:
    await store.load("s")


@pytest.mark.parametrize(
    ("make", "use"),
    [(SqliteEventStore, _append_one), (SqliteSessionStore, _load_one)],
)
@pytest.mark.parametrize("where", ["a-directory", "missing-dir/x.db"])
async def test_unusable_path_is_store_unavailable(
    tmp_path: Path, make: Any, use: Callable[[Any], Awaitable[None]], where: str
) -> None:
    (tmp_path / "a-directory").mkdir()
    store = make(tmp_path / where)  # opening is lazy: construction never touches the disk
    with pytest.raises(StoreUnavailable) as caught:
        await use(store)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    with pytest.raises(StoreUnavailable):  # still unavailable, still not sqlite3's error
        await use(store)
    await store.aclose()


async def test_file_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with raw(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    async with SqliteSessionStore(path) as store:
        with pytest.raises(StoreUnavailable, match="newer"):
            await store.load("s1")


async def test_cancelled_before_the_call_changes_nothing(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "e.db") as store:
        await store.append("s", "a", 1, b"one")
        with trio.move_on_after(0) as scope:
            await store.append("s", "a", 2, b"two")
        assert scope.cancelled_caught
        assert [e.seq for e in await store.replay_after("s", "a", 0)] == [1]
        await store.append("s", "a", 2, b"two")
        assert [e.seq for e in await store.replay_after("s", "a", 0)] == [1, 2]


async def test_a_call_gives_up_whole_at_its_callers_deadline(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    async with SqliteEventStore(path) as store:
        await store.append("s", "a", 1, b"one")
        with raw(path) as blocker:
            blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: append must wait

            async def release_soon() -> None:
                await trio.sleep(0.5)
                blocker.execute("COMMIT")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(release_soon)
                start = trio.current_time()
                with trio.move_on_after(0.05) as scope:
                    await store.append("s", "a", 2, b"two")
                # The lock's holder does not keep the caller (nor the thread)
                # past its deadline: the busy wait follows the caller's.
                assert scope.cancelled_caught
                assert trio.current_time() - start < 0.4
        # The transaction in the thread did not happen at all: no half-written event.
        assert [e.data for e in await store.replay_after("s", "a", 0)] == [b"one"]
        await store.append("s", "a", 2, b"two")
        assert [e.seq for e in await store.replay_after("s", "a", 1)] == [2]


async def test_a_rejected_append_leaves_no_trace(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "e.db", max_events_per_session=2) as store:
        await store.append("s", "a", 2, b"x")
        with pytest.raises(ValueError, match="grow"):
            await store.append("s", "a", 2, b"y")
        with pytest.raises(ValueError, match="grow"):
            await store.append("s", "a", 1, b"y")
        await store.append("s", "a", 3, b"z")
        assert [e.data for e in await store.replay_after("s", "a", 0)] == [b"x", b"z"]


async def test_every_call_is_a_checkpoint(tmp_path: Path) -> None:
    async with (
        SqliteEventStore(tmp_path / "e.db") as events,
        SqliteSessionStore(tmp_path / "s.db") as sessions,
    ):
        with trio.testing.assert_checkpoints():
            await events.append("s", "a", 1, b"x")
        with trio.testing.assert_checkpoints():
            await events.replay_after("s", "a", 0)
        with trio.testing.assert_checkpoints():
            await events.delete_session("s")
        with trio.testing.assert_checkpoints():
            await sessions.save(record(), ttl=60)
        with trio.testing.assert_checkpoints():
            await sessions.load("s1")
        with trio.testing.assert_checkpoints():
            await sessions.touch("s1", ttl=60, last_activity=1.0)
        with trio.testing.assert_checkpoints():
            await sessions.delete("s1")


async def test_closed_store(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    await store.append("s", "a", 1, b"x")
    await store.aclose()
    await store.aclose()  # idempotent
    with trio.testing.assert_checkpoints(), pytest.raises(trio.ClosedResourceError):
        await store.append("s", "a", 2, b"y")
    sessions = SqliteSessionStore(tmp_path / "e.db")
    await sessions.aclose()  # never opened
    with pytest.raises(trio.ClosedResourceError):
        await sessions.load("s1")


async def test_aclose_waits_for_calls_in_flight(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "e.db")
    results: list[int] = []

    async def append(seq: int) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            await store.append("s", "a", seq, b"x")
            results.append(seq)

    async with trio.open_nursery() as nursery:
        for seq in range(1, 6):
            nursery.start_soon(append, seq)
        await trio.testing.wait_all_tasks_blocked()
        await store.aclose()
    async with SqliteEventStore(tmp_path / "e.db") as reopened:
        stored = [e.seq for e in await reopened.replay_after("s", "a", 0)]
    assert stored == sorted(results)


async def test_expired_records_are_swept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "s.db"
    async with SqliteSessionStore(path, clock=trio.current_time) as store:
        await store.save(record("old"), ttl=10)
        await store.save(record("gone"), ttl=10)
        await trio.sleep(10)
        assert await store.load("gone") is None
        with raw(path) as conn:
            rows = conn.execute("SELECT session_id FROM mcp_session_records").fetchall()
        assert rows == [("old",)]
        await store.touch("old", ttl=60, last_activity=5.0)  # expired: not renewed
        await store.save(record("new"), ttl=10)
        with raw(path) as conn:
            rows = conn.execute("SELECT session_id FROM mcp_session_records").fetchall()
        assert rows == [("new",)]


async def test_corrupt_record_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteSessionStore(path) as store:
        await store.save(record(), ttl=60)
        with raw(path) as conn:
            conn.execute("UPDATE mcp_session_records SET record = '{\"nope\": 1}'")
        with pytest.raises(StoreUnavailable, match="corrupt"):
            await store.load("s1")
        with pytest.raises(StoreUnavailable, match="corrupt"):
            await store.touch("s1", ttl=60, last_activity=1.0)


async def test_delete_session_leaves_other_sessions(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    async with SqliteEventStore(path, max_events_per_session=2) as store:
        for seq in range(1, 4):
            await store.append("s", "a", seq, b"x")
        await store.append("t", "a", 1, b"y")
        await store.delete_session("s")
        assert list(await store.replay_after("s", "a", 0)) == []  # gap record gone too
        await store.append("s", "a", 1, b"fresh")  # numbering may restart
        assert [e.data for e in await store.replay_after("t", "a", 0)] == [b"y"]
        with raw(path) as conn:
            assert conn.execute(
                "SELECT session_id, events, bytes FROM mcp_event_sessions ORDER BY session_id"
            ).fetchall() == [("s", 1, 5), ("t", 1, 1)]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_events_per_session": 0}, {"max_bytes_per_session": 0}, {"max_age": 0}],
)
def test_invalid_bounds(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SqliteEventStore(tmp_path / "e.db", **kwargs)  # type: ignore[arg-type]


async def test_a_version_1_file_keeps_its_records_state(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = record(log_level="info", subscriptions=("res://a", "res://b"))
    with raw(path) as conn:
        # What schema version 1 wrote: the record's JSON holds its state.
        conn.execute(
            "CREATE TABLE mcp_session_records (session_id TEXT NOT NULL PRIMARY KEY,"
            " expires_at REAL NOT NULL, record TEXT NOT NULL) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO mcp_session_records VALUES (?, ?, ?)",
            ("s1", 1e12, old.to_json().decode()),
        )
        conn.execute("PRAGMA user_version = 1")
    async with SqliteSessionStore(path) as sessions:
        assert await sessions.load("s1") == old
        await sessions.update_state("s1", log_level="debug", unsubscribe=["res://a"])
        loaded = await sessions.load("s1")
        assert loaded is not None
        assert (loaded.log_level, loaded.subscriptions) == ("debug", ("res://b",))
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)


async def test_a_statement_running_past_the_deadline_is_interrupted(tmp_path: Path) -> None:
    async with SqliteEventStore(tmp_path / "e.db") as store:
        await store.append("s", "a", 1, b"one")

        def forever(conn: sqlite3.Connection) -> object:
            conn.execute("BEGIN IMMEDIATE")
            return conn.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
                " SELECT count(*) FROM c"
            ).fetchone()

        start = trio.current_time()
        with trio.move_on_after(0.2) as scope:
            await store._db.run(forever)
        # The thread is free again soon after the deadline, not never.
        assert scope.cancelled_caught
        assert trio.current_time() - start < 2.0
        # ... and the connection is usable: no transaction left open.
        await store.append("s", "a", 2, b"two")
        assert [e.seq for e in await store.replay_after("s", "a", 0)] == [1, 2]
