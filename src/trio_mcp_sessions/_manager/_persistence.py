"""Session records in the stores: save, TTL touch, busy refresh, forget, tombstones.

One owner for what the stores hold of each session and for the per-id facts
that keep it honest: which saves are running (and dirty), what state the
store holds (so a change is written as a difference), when a record's TTL
was last pushed, which ids are being deleted, and which ids closed for good
(never restored, whatever a store says). Every store call goes through a
:class:`StoreGuard`: bounded, counted, failing fast while the store is down.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import trio

from .._errors import StoreUnavailable
from .._interface import CloseReason
from .._protocol._jsonrpc import ProtocolError, Request
from .._protocol._lifecycle import parse_initialize
from .._stores._base import SessionRecord, as_nonblocking

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .._protocol._lifecycle import ClientInfo
    from .._session import Session
    from .._stores._base import EventStore, NonBlockingEventStore, SessionStore
    from .._stores._guard import StoreGuard
    from ._limits import SessionLimits

__all__ = ["MAX_TOMBSTONES", "SessionRecords"]

logger = logging.getLogger("trio_mcp_sessions.manager")

#: Recently closed ids remembered locally so a racing restore cannot resurrect them.
MAX_TOMBSTONES: Final = 10_000


class SessionRecords:
    """The session store's records and the event store's per-session events.

    Args:
        session_store: Where records live (``None``: nothing is saved).
        event_store: Where a session's events live (``None``: none).
        limits: The idle timeout and lifetime that set a record's TTL.
        sessions_guard, events_guard: The bounded paths to the two stores.
        spawn: Starts a background task in the manager's nursery.
    """

    __slots__ = (
        "_deletes",
        "_deleting",
        "_saving",
        "event_store",
        "events_guard",
        "last_touch",
        "limits",
        "nonblocking_events",
        "session_store",
        "sessions_guard",
        "spawn",
        "stored_state",
        "tombstones",
    )

    def __init__(
        self,
        session_store: SessionStore | None,
        event_store: EventStore | None,
        limits: SessionLimits,
        sessions_guard: StoreGuard,
        events_guard: StoreGuard,
        spawn: Callable[..., None],
    ) -> None:
        self.session_store = session_store
        self.event_store = event_store
        self.nonblocking_events: NonBlockingEventStore | None = as_nonblocking(event_store)
        self.limits = limits
        self.sessions_guard = sessions_guard
        self.events_guard = events_guard
        self.spawn = spawn
        self._saving: dict[str, bool] = {}
        #: What the store holds of each session's mutable state (log level,
        #: subscriptions), so a change is stored as the difference.
        self.stored_state: dict[str, tuple[str | None, frozenset[str]]] = {}
        self.last_touch: dict[str, float] = {}
        #: Ids closed for good recently: never restored, whatever a store says.
        self.tombstones: OrderedDict[str, None] = OrderedDict()
        #: Sessions whose DELETE is removing their record (nothing may save it
        #: meanwhile), and whether a save was skipped.
        self._deleting: dict[str, bool] = {}
        #: The DELETE under way per session id, which a concurrent one waits for.
        self._deletes: dict[str, trio.Event] = {}

    @property
    def tracked(self) -> int:
        """Sessions this component keeps bookkeeping for (settles at the live ones)."""
        return len(self.stored_state.keys() | self.last_touch.keys())

    def ttl(self) -> float:
        lifetime = self.limits.max_lifetime
        return min(self.limits.idle_timeout, lifetime) if lifetime else self.limits.idle_timeout

    # -- save ---------------------------------------------------------------------------

    @staticmethod
    def record(session: Session) -> SessionRecord:
        assert session.client_info is not None
        now = time.time()
        return SessionRecord(
            session_id=session.session_id,
            protocol_version=session.client_info.protocol_version,
            initialize_params=session.client_info.raw_params,
            log_level=session.log_level,
            subscriptions=tuple(sorted(session.subscriptions)),
            principal=session.principal,
            created_at=now - (trio.current_time() - session.created_at),
            last_activity=now - (trio.current_time() - session.last_activity),
        )

    async def save(self, session: Session, *, whole: bool = True) -> None:
        """Write a session's record; repeated while changes arrive during the write.

        With ``whole=False`` (a ``logging/setLevel`` or a subscription
        changed) and a store that offers ``update_state``, only what changed
        since the last write goes to the store, not the whole record.
        """
        store = self.session_store
        session_id = session.session_id
        if session_id in self._deleting:
            self._deleting[session_id] = True  # saved if the delete fails
            return
        if store is None or session_id in self._saving:
            if session_id in self._saving:
                self._saving[session_id] = True  # dirty: the running save goes again
            return
        self._saving[session_id] = False
        update = getattr(store, "update_state", None)
        try:
            while session.is_open and session.client_info is not None:
                state = session.persisted_state()
                stored = self.stored_state.get(session_id)
                try:
                    if whole or update is None or stored is None:
                        await self.sessions_guard.call(
                            "session save", store.save, self.record(session), ttl=self.ttl()
                        )
                        if session.is_open:  # closed meanwhile: its entries are gone
                            self.last_touch[session_id] = trio.current_time()
                    elif state != stored:
                        await self.sessions_guard.call(
                            "session state update",
                            update,
                            session_id,
                            log_level=state[0],
                            subscribe=sorted(state[1] - stored[1]),
                            unsubscribe=sorted(stored[1] - state[1]),
                        )
                except StoreUnavailable:
                    return  # degraded: served, not restorable until the next save
                if not session.is_open:
                    return  # closed while we wrote: nothing of it may stay here
                self.stored_state[session_id] = state
                if not self._saving.get(session_id):
                    return
                self._saving[session_id] = False
                whole = False
        finally:
            self._saving.pop(session_id, None)

    async def save_state(self, session: Session) -> None:
        await self.save(session, whole=False)

    async def persist_for_restart(self, sessions: Iterable[Session], timeout: float) -> None:
        """Save every open session (bounded by *timeout*) so a restart can restore it."""
        if self.session_store is None:
            return
        todo = [s for s in sessions if s.is_open and s.client_info]
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for session in todo:
                    nursery.start_soon(self.save, session)

    async def load(
        self, session_id: str, principal: str | None
    ) -> tuple[SessionRecord, Request, ClientInfo] | None:
        """The stored record of *session_id* and its ``initialize`` to replay, if usable.

        ``None`` when there is none, it belongs to another principal, or it
        cannot be parsed. Raises :class:`StoreUnavailable`.
        """
        assert self.session_store is not None
        record = await self.sessions_guard.call("session load", self.session_store.load, session_id)
        if record is None or record.principal != principal:
            return None
        try:
            request = Request(0, "initialize", record.initialize_params)
            client = parse_initialize(request)
        except ProtocolError:
            logger.warning("session %s: stored record is unusable", session_id)
            return None
        return record, request, client

    # -- touch ----------------------------------------------------------------------------

    def touch_due(self, session_id: str) -> bool:
        """Whether a record's TTL wants refreshing (a quarter of it has passed); if so, now."""
        now = trio.current_time()
        if now - self.last_touch.get(session_id, -math.inf) < self.ttl() / 4:
            return False
        self.last_touch[session_id] = now
        return True

    async def touch(self, session_id: str) -> None:
        """Push a record's expiry a TTL ahead (raises :class:`StoreUnavailable`)."""
        assert self.session_store is not None
        await self.sessions_guard.call(
            "session touch",
            self.session_store.touch,
            session_id,
            ttl=self.ttl(),
            last_activity=time.time(),
        )

    async def touch_record(self, session: Session) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.touch(session.session_id)

    def activity(self, session: Session) -> None:
        """Keep the record's TTL ahead of the idle deadline, lazily: one touch
        per quarter of the TTL, not one store call per request."""
        if (
            self.session_store is not None
            and session.client_info is not None
            and self.touch_due(session.session_id)
        ):
            self.spawn(self.touch_record, session)

    async def keep_busy_records(
        self,
        scope: trio.CancelScope,
        busy: set[str],
        lookup: Callable[[str], Session | None],
    ) -> None:
        """Refresh the store records of busy sessions, a quarter of the TTL apart.

        A busy session (a request in flight, a stream attached, such as a GET
        stream held for hours) never idles out, and nothing else touches its
        record while the client sends nothing; without this its record would
        expire and a restart would lose a live session.
        """
        with scope:
            while True:
                await trio.sleep(self.ttl() / 4)
                for session_id in list(busy):
                    session = lookup(session_id)
                    if session is None or not session.is_open or session.client_info is None:
                        continue
                    if not self.touch_due(session_id):
                        continue  # touched on activity recently enough
                    try:
                        await self.touch(session_id)
                    except StoreUnavailable:
                        break  # the store is down: try again next period

    # -- forget ---------------------------------------------------------------------------

    def closed(self, session_id: str, reason: CloseReason) -> None:
        """A session closed: drop its entries; unless it is kept for a restart
        (a shutdown with a session store), tombstone it and forget what is stored."""
        self.last_touch.pop(session_id, None)
        self.stored_state.pop(session_id, None)
        if reason is CloseReason.SHUTDOWN and self.session_store is not None:
            return  # kept for a restart
        self.tombstones[session_id] = None
        if len(self.tombstones) > MAX_TOMBSTONES:
            self.tombstones.popitem(last=False)
        nonblocking = self.nonblocking_events
        if nonblocking is not None:
            nonblocking.delete_session_nowait(session_id)
        # (A DELETE removed the record before the close and removes the
        # events after it: the manager's close_session.)
        deleted = reason is CloseReason.DELETED and self.session_store is not None
        if not deleted and (
            self.session_store is not None or (self.event_store is not None and nonblocking is None)
        ):
            self.spawn(self.forget, session_id)

    async def forget(self, session_id: str) -> None:
        """Remove everything stored for a session closed for good."""
        if self.session_store is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.sessions_guard.call(
                    "session delete", self.session_store.delete, session_id
                )
        await self.forget_events(session_id)

    async def forget_events(self, session_id: str) -> None:
        if self.event_store is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.events_guard.call(
                    "event delete", self.event_store.delete_session, session_id
                )

    # -- the durable DELETE ------------------------------------------------------------

    def pending_delete(self, session_id: str) -> trio.Event | None:
        """The DELETE of *session_id* under way, which a concurrent one waits for."""
        return self._deletes.get(session_id)

    async def delete_record(self, session: Session) -> None:
        """Remove a deleted session's record *before* closing it, or refuse the delete.

        A DELETE is never undone: if the record stayed, a restart or another
        instance would restore the session. So the session closes only once
        its record is gone; while the store cannot delete it, the session
        stays as it was and the caller answers 503 (the client retries).

        Raises:
            StoreUnavailable: The record could not be deleted.
        """
        assert self.session_store is not None
        session_id = session.session_id
        self._deleting[session_id] = False  # no save may recreate it meanwhile
        done = self._deletes[session_id] = trio.Event()
        try:
            await self.sessions_guard.call("session delete", self.session_store.delete, session_id)
        except StoreUnavailable:
            if self._deleting.pop(session_id) and session.is_open:
                self.spawn(self.save, session)  # a change arrived meanwhile
            raise
        except BaseException:
            self._deleting.pop(session_id, None)
            raise
        finally:
            del self._deletes[session_id]
            done.set()
        # No checkpoint from here to the close: nothing can save it again.
        del self._deleting[session_id]
