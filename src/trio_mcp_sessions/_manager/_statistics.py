"""The manager's counters, its lifecycle log lines, and their snapshot.

One owner of "what happened": counters change, and the log line is written,
where the event happens (a creation, a close, a refusal, a restore); the
gauges (live, busy, in flight, subscriptions) are read from their owners when
a snapshot is taken, so ``statistics()`` only reads.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._interface import CloseReason
    from .._protocol._lifecycle import ClientInfo
    from .._session import Session
    from .._stores._guard import StoreGuard, StoreGuardStatistics
    from ._admission import Admission
    from ._table import SessionTable

__all__ = ["ManagerCounters", "ManagerStatistics"]

logger = logging.getLogger("trio_mcp_sessions.manager")


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A snapshot of the manager's counters (see :meth:`BoundedSessionManager.statistics`).

    Attributes:
        live_sessions: Sessions holding a slot now.
        max_sessions: The cap.
        created: Sessions created since start.
        closed: Sessions closed since start (sum of ``closed_by_reason``).
        closed_by_reason: ``{reason: count}`` (:class:`CloseReason` values).
        refused_by_reason: ``{"capacity" | "rate_limit" | "unavailable" | "inflight": count}``
            (``inflight``: requests refused at a session's in-flight cap).
        evicted: Sessions closed to make room (also in ``closed_by_reason``).
        busy_sessions: Live sessions with a request in flight or a stream open.
        restored: Sessions brought back from the session store.
        store_errors: Store calls that failed, timed out, or were refused at
            once while their store was down (service went on, degraded).
        requests_in_flight: Requests whose handlers are running, all sessions.
        dropped_readers: HTTP responses dropped because their reader took
            nothing for ``write_timeout`` seconds (or fell behind a broadcast).
        stores: Per store (``"sessions"``, ``"events"``, ``"rate_limit"``):
            its circuit state and call counters (:class:`StoreGuardStatistics`).
        subscriptions: ``resources/subscribe`` URIs held by live sessions
            (each at most ``McpServer.max_subscriptions``).
        tracked_records: Sessions whose stored record the manager tracks
            (last saved state, last TTL touch): the live ones with a session
            store; more would be bookkeeping left behind by closed sessions.
        slots_held: Tokens of the session cap's :class:`trio.CapacityLimiter`
            held now: ``live_sessions`` plus sessions still being created or
            closed. Settles at ``live_sessions``; more would be a leaked slot.
        timed_out: Handlers cut by their deadline (``request_timeout``,
            ``max_request_time``), all sessions, each answered that it timed
            out (a client's cancel is not counted here).
    """

    live_sessions: int
    max_sessions: int
    created: int
    closed: int
    closed_by_reason: dict[str, int] = field(default_factory=dict)
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    evicted: int = 0
    busy_sessions: int = 0
    restored: int = 0
    store_errors: int = 0
    requests_in_flight: int = 0
    dropped_readers: int = 0
    stores: dict[str, StoreGuardStatistics] = field(default_factory=dict)
    subscriptions: int = 0
    slots_held: int = 0
    tracked_records: int = 0
    timed_out: int = 0


@final
class ManagerCounters:
    """What happened since start. Sessions still live count their dropped readers
    and timed-out handlers."""

    __slots__ = (
        "closed_by_reason",
        "created",
        "dropped_readers",
        "evicted",
        "refused",
        "restored",
        "timed_out",
    )

    def __init__(self) -> None:
        self.created = 0
        self.restored = 0
        self.evicted = 0
        #: Dropped readers of sessions that have closed (live ones count their own).
        self.dropped_readers = 0
        #: Timed-out handlers of sessions that have closed (live ones count their own).
        self.timed_out = 0
        self.closed_by_reason: Counter[str] = Counter()
        #: Refusals counted here; the table and admission count their own.
        self.refused: Counter[str] = Counter()

    def session_initialized(self, session_id: str, client: ClientInfo) -> None:
        name = client.client_info.get("name")
        logger.info(
            "session created session_id=%s protocol_version=%s client=%s",
            session_id,
            client.protocol_version,
            name,
            extra={
                "session_id": session_id,
                "protocol_version": client.protocol_version,
                "client": name,
            },
        )

    def session_closed(self, session: Session, reason: CloseReason, *, now: float) -> None:
        self.dropped_readers += session.dropped_readers
        self.timed_out += session.timed_out
        self.closed_by_reason[reason.value] += 1
        if reason.value == "evicted":
            self.evicted += 1
        logger.info(
            "session closed session_id=%s reason=%s lifetime=%.3fs",
            session.session_id,
            reason.value,
            now - session.created_at,
            extra={"session_id": session.session_id, "reason": reason.value},
        )

    def snapshot(
        self,
        table: SessionTable[Session],
        admission: Admission,
        guards: Mapping[str, StoreGuard],
        max_sessions: int,
        tracked_records: int,
    ) -> ManagerStatistics:
        """Counters plus the gauges read from their owners (O(live sessions))."""
        sessions = table.sessions.values()
        refused = Counter(self.refused)
        if admission.rate_limited:
            refused["rate_limit"] += admission.rate_limited
        if table.refused:
            refused["capacity"] += table.refused
        return ManagerStatistics(
            live_sessions=len(table),
            max_sessions=max_sessions,
            created=self.created,
            closed=sum(self.closed_by_reason.values()),
            closed_by_reason=dict(self.closed_by_reason),
            refused_by_reason=dict(refused),
            evicted=self.evicted,
            busy_sessions=len(table.busy),
            restored=self.restored,
            store_errors=sum(guard.failures for guard in guards.values()),
            stores={name: guard.statistics() for name, guard in guards.items()},
            subscriptions=sum(len(s.subscriptions) for s in sessions),
            requests_in_flight=sum(s.inflight for s in sessions),
            dropped_readers=self.dropped_readers + sum(s.dropped_readers for s in sessions),
            slots_held=table.limiter.borrowed_tokens,
            tracked_records=tracked_records,
            timed_out=self.timed_out + sum(s.timed_out for s in sessions),
        )
