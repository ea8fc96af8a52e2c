"""Each store call a session needs is made once: a DELETE deletes the record and the events once.

(Issue 10's defect: the DELETE removed the record before closing the session, and the close then
spawned a second delete of the record and of the events.)
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from conftest import initialize_body
from test_manager import INFO
from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    InMemoryEventStore,
    InMemorySessionStore,
    McpServer,
    SessionRecord,
    StoredEvent,
)
from trio_mcp_sessions._protocol._jsonrpc import Request
from trio_mcp_sessions._protocol._lifecycle import parse_initialize

if TYPE_CHECKING:
    from collections.abc import Sequence


class CountingSessionStore:
    def __init__(self, calls: Counter[str]) -> None:
        self._store = InMemorySessionStore()
        self._calls = calls

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        self._calls["session save"] += 1
        await self._store.save(record, ttl=ttl)

    async def load(self, session_id: str) -> SessionRecord | None:
        self._calls["session load"] += 1
        return await self._store.load(session_id)

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        self._calls["session touch"] += 1
        await self._store.touch(session_id, ttl=ttl, last_activity=last_activity)

    async def delete(self, session_id: str) -> None:
        self._calls["session delete"] += 1
        await self._store.delete(session_id)

    async def update_state(self, session_id: str, **changes: Any) -> None:
        self._calls["session update"] += 1
        await self._store.update_state(session_id, **changes)


class CountingEventStore:
    """Async only (like SQLite and Redis), so every call goes through the manager's path."""

    def __init__(self, calls: Counter[str]) -> None:
        self._store = InMemoryEventStore()
        self._calls = calls

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        self._calls["event append"] += 1
        await self._store.append(session_id, stream_id, seq, data)

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        self._calls["event replay"] += 1
        return await self._store.replay_after(session_id, stream_id, after_seq)

    async def delete_session(self, session_id: str) -> None:
        self._calls["event delete"] += 1
        await self._store.delete_session(session_id)


async def test_a_delete_removes_the_record_and_the_events_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: Counter[str] = Counter()
    async with BoundedSessionManager(
        McpServer("once"),
        session_store=CountingSessionStore(calls),
        event_store=CountingEventStore(calls),
    ) as manager:
        session_id = await manager.create_session(INFO)
        request = Request(1, "initialize", initialize_body()["params"])
        await manager.initialize_session(session_id, request, parse_initialize(request), INFO)
        await manager.close_session(session_id, CloseReason.DELETED)
        await trio.sleep(10)  # anything spawned after the close has run
    assert calls["session delete"] == 1
    assert calls["event delete"] == 1
