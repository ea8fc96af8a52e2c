"""Store interfaces. Implementations know nothing of HTTP or of MCP methods.

Every implementation raises :class:`StoreUnavailable` (with the backend's
error as ``__cause__``) when its backend fails, so callers never see sqlite3
or Redis exceptions. Callers bound every call with a timeout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EventStore",
    "NonBlockingEventStore",
    "SessionRecord",
    "SessionStateUpdates",
    "SessionStore",
    "StoredEvent",
    "as_nonblocking",
]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One SSE event as stored: its position in its stream and its JSON payload."""

    seq: int
    data: bytes


@runtime_checkable
class EventStore(Protocol):
    """Where SSE events wait for a client that may reconnect with ``Last-Event-ID``.

    Every call is scoped by session *and* stream, so one session can never read
    another's events. The session assigns sequence numbers 1, 2, 3, ... per
    stream, with no gaps; the store keeps them within its bounds (count, bytes,
    age, each documented by the implementation).

    A store that never blocks (like :class:`InMemoryEventStore`) may also offer
    synchronous ``append_nowait`` and ``delete_session_nowait`` with the same
    arguments; sessions then use them and skip a scheduling round per event.
    """

    async def append(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """Store one event. Sequence numbers of a stream only grow."""
        ...

    async def replay_after(
        self, session_id: str, stream_id: str, after_seq: int
    ) -> Sequence[StoredEvent]:
        """The stream's events strictly after *after_seq*, oldest first.

        Returns an empty sequence for a stream the store does not know.

        Raises:
            EventsPurged: Some events after *after_seq* were dropped by the
                store's bounds; a partial replay would lose messages silently.
            StoreUnavailable: The backend failed.
        """
        ...

    async def delete_session(self, session_id: str) -> None:
        """Forget everything stored for a session (it closed for good)."""
        ...


@runtime_checkable
class NonBlockingEventStore(EventStore, Protocol):
    """An :class:`EventStore` that never blocks, with synchronous twins of two calls.

    A session stores each event with :meth:`append_nowait` (no scheduling
    round, no lock: numbering, storing and delivery happen in call order),
    and the manager forgets a closed session's events with
    :meth:`delete_session_nowait` instead of a background task.
    :class:`InMemoryEventStore` is one. Both must be offered: a store with
    only one of them is used through its async calls alone.
    """

    def append_nowait(self, session_id: str, stream_id: str, seq: int, data: bytes) -> None:
        """:meth:`EventStore.append`, done before it returns.

        Raises:
            ValueError: *seq* does not grow.
            StoreUnavailable: The backend failed (counted like any store call).
        """
        ...

    def delete_session_nowait(self, session_id: str) -> None:
        """:meth:`EventStore.delete_session`, done before it returns."""
        ...


def as_nonblocking(store: EventStore | None) -> NonBlockingEventStore | None:
    """*store* if it is a :class:`NonBlockingEventStore`, else ``None``.

    Asked once by whatever holds the store (a session, the manager's
    records), never per event. It looks up the two ``*_nowait`` methods, not
    ``isinstance(store, NonBlockingEventStore)``: for an :class:`EventStore`
    the answer is the same, but on Python 3.11 that ``isinstance`` takes 7
    to 11 µs (it looks up every member each time), a tenth of a session's
    create-and-close; this takes 0.2 µs.
    """
    if (
        getattr(store, "append_nowait", None) is not None
        and getattr(store, "delete_session_nowait", None) is not None
    ):
        return cast("NonBlockingEventStore", store)
    return None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a session store keeps so another process can restore the session.

    Timestamps are wall-clock seconds (:func:`time.time`), comparable across
    processes and restarts.

    Attributes:
        session_id: The ``Mcp-Session-Id``.
        protocol_version: The negotiated revision.
        initialize_params: The client's ``initialize`` params as sent
            (capabilities, clientInfo, requested version), replayed on restore.
        log_level: The client's ``logging/setLevel``, if any.
        subscriptions: Resource URIs the client subscribed to.
        principal: The credential identity the session is bound to; a request
            with another identity is answered as if the session did not exist.
        created_at: When the session was created.
        last_activity: The last activity this record knows of.
    """

    session_id: str
    protocol_version: str
    initialize_params: dict[str, Any]
    log_level: str | None = None
    subscriptions: tuple[str, ...] = ()
    principal: str | None = None
    created_at: float = 0.0
    last_activity: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        payload = asdict(self)
        payload["subscriptions"] = list(self.subscriptions)
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> SessionRecord:
        """Raises :class:`ValueError` for anything that is not a record."""
        try:
            payload = json.loads(data)
            return cls(
                session_id=str(payload["session_id"]),
                protocol_version=str(payload["protocol_version"]),
                initialize_params=dict(payload["initialize_params"]),
                log_level=payload.get("log_level"),
                subscriptions=tuple(payload.get("subscriptions", ())),
                principal=payload.get("principal"),
                created_at=float(payload.get("created_at", 0.0)),
                last_activity=float(payload.get("last_activity", 0.0)),
                extra=dict(payload.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a session record: {exc}") from exc


@runtime_checkable
class SessionStore(Protocol):
    """Where session records live between processes (restart, other instances).

    Records expire *ttl* seconds after their last :meth:`save` or
    :meth:`touch` (the manager passes the idle timeout), so an instance that
    dies without cleaning up leaves nothing behind for long.

    A store may also offer :meth:`SessionStateUpdates.update_state` (the built-in
    ones do): the manager then stores a ``logging/setLevel`` or a
    ``resources/subscribe`` as the change alone, instead of saving the whole
    record (with the client's ``initialize`` params) again each time. Without
    it, every change is a :meth:`save`.
    """

    async def save(self, record: SessionRecord, *, ttl: float) -> None:
        """Create or replace the record; it expires after *ttl* seconds."""
        ...

    async def load(self, session_id: str) -> SessionRecord | None:
        """The record, or ``None`` when unknown or expired."""
        ...

    async def touch(self, session_id: str, *, ttl: float, last_activity: float) -> None:
        """Push the expiry to *ttl* seconds from now (no-op for an unknown id)."""
        ...

    async def delete(self, session_id: str) -> None:
        """Remove the record, so the session can never be restored."""
        ...


@runtime_checkable
class SessionStateUpdates(Protocol):
    """The optional incremental part of a :class:`SessionStore`."""

    async def update_state(
        self,
        session_id: str,
        *,
        log_level: str | None,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
    ) -> None:
        """Set the record's log level and add and remove subscriptions, in place.

        A no-op for an unknown or expired id (it is not resurrected); the
        expiry stays as it is. A later :meth:`SessionStore.load` returns the
        record with these changes; a later :meth:`SessionStore.save` replaces
        them with the saved record's.
        """
        ...
