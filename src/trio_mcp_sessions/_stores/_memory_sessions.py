"""The in-memory session store: for tests and one process, and the contract's reference.

It is not the default: without a ``session_store`` the manager keeps no
records (and restores nothing).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._base import SessionRecord

__all__ = ["InMemorySessionStore"]


@final
class InMemorySessionStore:
    """Session records in a dict, with expiry on trio's clock.

    It survives nothing (not a restart, not another process); it exists so
    tests can exercise the restore path without a backend, and as the
    contract's reference.

    Args:
        max_records: Records kept at most; the soonest to expire goes first.
    """

    def __init__(self, *, max_records: int = 100_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_records = max_records
        self._records: dict[str, tuple[float, SessionRecord]] = {}

    def _expired(self, session_id: str, now: float) -> bool:
        entry = self._records.get(session_id)
        if entry is not None and entry[0] <= now:
            del self._records[session_id]
            return True
        return entry is None

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self._records[record.session_id] = (now + ttl, record)
        if len(self._records) > self.max_records:
            for session_id in [s for s, (exp, _) in self._records.items() if exp <= now]:
                del self._records[session_id]
            while len(self._records) > self.max_records:
                soonest = min(self._records, key=lambda s: self._records[s][0])
                del self._records[soonest]

    async def load(self, session_id: str) -> SessionRecord | None:
        await trio.lowlevel.checkpoint()
        if self._expired(session_id, trio.current_time()):
            return None
        return self._records[session_id][1]

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        if not self._expired(session_id, now):
            record = self._records[session_id][1]
            self._records[session_id] = (now + ttl, replace(record, last_activity=last_activity))

    async def update_state(
        self,
        session_id: str,
        *,
        log_level: str | None,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
    ) -> None:
        await trio.lowlevel.checkpoint()
        if self._expired(session_id, trio.current_time()):
            return
        expires_at, record = self._records[session_id]
        subscriptions = (set(record.subscriptions) | set(subscribe)) - set(unsubscribe)
        record = replace(record, log_level=log_level, subscriptions=tuple(sorted(subscriptions)))
        self._records[session_id] = (expires_at, record)

    async def delete(self, session_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._records.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._records)
