"""Restoring a session from its stored record: single-flight per id, admitted under the cap.

A restore takes a slot like a new session (the cap and the eviction policy
hold), but is not charged to the creation rate limits: it creates nothing
new for its client, and after a restart every client comes back at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

import trio

from .._interface import CloseReason, RestoreOutcome
from .._protocol._jsonrpc import ErrorResponse
from ._admission import Receipt

if TYPE_CHECKING:
    from .._interface import RequestInfo
    from ._admission import Admission
    from ._manager import BoundedSessionManager
    from ._persistence import SessionRecords
    from ._statistics import ManagerCounters

__all__ = ["Restorer"]

logger = logging.getLogger("trio_mcp_sessions.manager")


@final
class Restorer:
    """Owns the restores under way; the manager opens and closes the sessions."""

    __slots__ = ("_admission", "_counters", "_manager", "_records", "_restoring")

    def __init__(
        self,
        manager: BoundedSessionManager,
        records: SessionRecords,
        admission: Admission,
        counters: ManagerCounters,
    ) -> None:
        self._manager = manager
        self._records = records
        self._admission = admission
        self._counters = counters
        #: The restore under way per session id, which a concurrent one waits for.
        self._restoring: dict[str, trio.Event] = {}

    async def restore(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        await trio.lowlevel.checkpoint()
        while True:
            if self._manager.get_session(session_id) is not None:
                return RestoreOutcome.ALREADY_PRESENT
            if self._records.session_store is None:
                return RestoreOutcome.NOT_SUPPORTED
            if session_id in self._records.tombstones:
                return RestoreOutcome.NOT_FOUND
            pending = self._restoring.get(session_id)
            if pending is None:
                break
            await pending.wait()  # someone else is restoring it: wait, then look again
        done = self._restoring[session_id] = trio.Event()
        try:
            return await self._restore(session_id, info)
        finally:
            del self._restoring[session_id]
            done.set()

    async def _restore(self, session_id: str, info: RequestInfo) -> RestoreOutcome:
        manager = self._manager
        manager._check_admission()
        loaded = await self._records.load(session_id, info.principal)
        if loaded is None:
            return RestoreOutcome.NOT_FOUND
        record, request, client = loaded
        # Not charged to the creation budget (an empty receipt): see the module.
        session = await manager._open(session_id, info, Receipt())
        self._admission.settle(session_id)
        reply = await session.restore(request, client, record.log_level, record.subscriptions)
        if isinstance(reply, ErrorResponse):
            # The application refused the restore (or the session closed while
            # its hooks ran): the session is gone for good.
            if session.is_open:
                await manager.close_session(session_id, CloseReason.ERROR)
            return RestoreOutcome.NOT_FOUND
        self._counters.restored += 1
        logger.info(
            "session restored session_id=%s protocol_version=%s",
            session_id,
            client.protocol_version,
            extra={"session_id": session_id, "restored": True},
        )
        manager._spawn(self._records.save, session)
        return RestoreOutcome.RESTORED
