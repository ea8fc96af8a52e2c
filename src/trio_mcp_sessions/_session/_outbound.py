"""A session's outbound streams: numbering, storing, attach and detach, replay.

Outbound messages never touch a socket here. Each HTTP response attached to a
stream reads from a bounded buffer (an :class:`EventStream`); a producer that
finds it full waits for the reader (back-pressure, so a reader that keeps up
loses nothing), and a reader that takes nothing for the write timeout is
dropped: its client resumes with ``Last-Event-ID`` from the event store.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any

import trio

from .._errors import EventsPurged, StoreUnavailable, UnknownEventId
from .._protocol import _event_ids
from .._protocol._jsonrpc import Message, Notification, RequestId, encode
from .._protocol._lifecycle import supports_priming
from .._stores._base import as_nonblocking
from .._stores._guard import StoreGuard
from .._streams import EventStream, SseEvent

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._interface import ReplyMode
    from .._protocol._clock import SessionClock
    from .._protocol._lifecycle import ClientInfo
    from .._stores._base import EventStore, NonBlockingEventStore

logger = logging.getLogger("trio_mcp_sessions.session")

#: Random per process: with a counter, names streams uniquely across instances.
_PROCESS_TAG = secrets.token_hex(6)
_stream_numbers = itertools.count(1)


def _new_process_tag() -> None:
    global _PROCESS_TAG
    _PROCESS_TAG = secrets.token_hex(6)


# A forked worker must not name streams like its parent and its siblings.
os.register_at_fork(after_in_child=_new_process_tag)


class _OutboundStream:
    """An outbound SSE stream: a POST's (for its requests) or the standalone GET one."""

    __slots__ = (
        "_lock",
        "ever_attached",
        "pending",
        "reader",
        "reply_mode",
        "seq",
        "standalone",
        "stream_id",
    )

    def __init__(self, stream_id: str, *, standalone: bool, reply_mode: ReplyMode) -> None:
        self.stream_id = stream_id
        self.standalone = standalone
        self.reply_mode = reply_mode
        self.seq = 0
        self.pending: set[RequestId] = set()
        self.reader: EventStream | None = None
        self.ever_attached = False
        self._lock: trio.Lock | None = None

    @property
    def lock(self) -> trio.Lock:
        """Orders numbering with storing; made on first use (most streams never need it)."""
        if self._lock is None:
            self._lock = trio.Lock()
        return self._lock

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()

    def event_id(self, seq: int) -> str:
        return _event_ids.event_id(self.stream_id, seq)


def parse_event_id(event_id: str) -> tuple[str, int]:
    """Split ``"<stream>_<seq>"``; raise :class:`UnknownEventId` for anything else."""
    parsed = _event_ids.parse_event_id(event_id)
    if parsed is None:
        raise UnknownEventId(f"malformed Last-Event-ID {event_id[:128]!r}")
    return parsed


class _Outbound:
    """The outbound half of :class:`Session`: its streams and what delivers to them.

    A mixin, so the hot path stays one attribute lookup away (``self._emit``)
    and an idle session stays one slotted object. It owns the slots below;
    the annotations after them are the session's, read here.
    """

    __slots__ = (
        "_nonblocking_store",
        "_request_streams",
        "_standalone_stream",
        "_streams",
        "dropped_readers",
        "event_store",
        "retry_ms",
        "store_guard",
        "write_timeout",
    )

    session_id: str
    clock: SessionClock
    closed: trio.Event
    client_info: ClientInfo | None

    if TYPE_CHECKING:

        def touch(self) -> None: ...

        def _update_deadline(self) -> None: ...

    def _init_outbound(
        self,
        event_store: EventStore | None,
        *,
        retry_ms: int,
        store_timeout: float,
        write_timeout: float,
        store_guard: StoreGuard | None,
    ) -> None:
        #: Seconds an attached response may take nothing before it is dropped.
        self.write_timeout = write_timeout
        #: Responses dropped because their reader took nothing for ``write_timeout``.
        self.dropped_readers = 0
        #: The one bounded path of every event-store call (timeout, circuit breaker).
        self.store_guard = (
            store_guard if store_guard is not None else StoreGuard("events", timeout=store_timeout)
        )
        self.event_store = event_store
        self._nonblocking_store: NonBlockingEventStore | None = as_nonblocking(event_store)
        self.retry_ms = retry_ms
        self._streams: dict[str, _OutboundStream] = {}
        self._request_streams: dict[RequestId, _OutboundStream] = {}
        self._standalone_stream: _OutboundStream | None = None

    @property
    def _standalone(self) -> _OutboundStream:
        stream = self._standalone_stream
        if stream is None:
            stream = self._standalone_stream = self._new_stream(standalone=True, reply_mode="sse")
        return stream

    # -- streams --------------------------------------------------------------------------

    def _new_stream(self, *, standalone: bool, reply_mode: ReplyMode) -> _OutboundStream:
        # Unique within this process by the counter, and across processes
        # and restarts (a restored session keeps its stored streams) by the
        # process's random tag; no system call per stream.
        stream_id = _event_ids.stream_id(
            standalone=standalone, unique=f"{_PROCESS_TAG}{next(_stream_numbers):x}"
        )
        stream = _OutboundStream(stream_id, standalone=standalone, reply_mode=reply_mode)
        self._streams[stream_id] = stream
        return stream

    def _priming(self, stream: _OutboundStream) -> SseEvent | None:
        client = self.client_info
        if client is None or not supports_priming(client.protocol_version):
            return None
        return SseEvent(stream.event_id(stream.seq), b"", self.retry_ms)

    def _attach(self, stream: _OutboundStream, replay: Sequence[SseEvent] = ()) -> EventStream:
        if stream.reader is not None:
            # The old response is presumably dead (the client reconnected).
            stream.reader.end()
            self.clock.streams -= 1

        def on_detach() -> None:
            if stream.reader is handle:
                stream.reader = None
                self.clock.streams -= 1
                self.touch()

        handle = EventStream(
            stream.stream_id,
            priming=self._priming(stream) if stream.reply_mode == "sse" else None,
            replay=replay,
            on_detach=on_detach,
        )
        stream.reader = handle
        stream.ever_attached = True
        self.clock.streams += 1
        self._update_deadline()
        return handle

    def _deliver(
        self, stream: _OutboundStream, event: SseEvent, *, wait: bool
    ) -> EventStream | None:
        """Queue *event* for the attached response.

        Returns the response when its producer must now wait for it (it is
        full), or, without *wait*, drop it (it was full before this event: an
        empty buffer always takes one event, however large).
        """
        reader = stream.reader
        if reader is None:
            return None
        if not wait and not reader.writable:
            return reader
        try:
            reader.put(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        return None if not wait or reader.writable else reader

    async def _wait_for_reader(self, reader: EventStream, wait: bool = True) -> None:
        """Back-pressure: wait while the response's buffer is full, within the write timeout.

        A reader that takes nothing for ``write_timeout`` seconds (or at once,
        without *wait*) is dropped; what it missed stays in the event store
        for its client to resume.
        """
        if not wait:
            reader.drop()
            dropped = True
        else:
            dropped = not await reader.wait_writable(self.write_timeout)
        if dropped:
            self.dropped_readers += 1
            logger.warning(
                "session %s: dropped a response whose reader %s%s",
                self.session_id,
                f"took nothing for {self.write_timeout} s" if wait else "fell behind a broadcast",
                "" if self.event_store is not None else " (no event store: its events are lost)",
            )

    async def _emit(
        self, stream: _OutboundStream, message: Message | bytes, *, wait_for_reader: bool = True
    ) -> None:
        data = message if isinstance(message, bytes) else encode(message)
        if self.closed.is_set():
            return  # nothing may be stored for a session that is gone
        store = self.event_store if stream.reply_mode == "sse" else None
        nonblocking = self._nonblocking_store if store is not None else None
        if store is None or (nonblocking is not None and not stream.locked):
            # Nothing to store, or a store that never blocks (in memory):
            # numbering, storing and delivery happen without yielding, so the
            # order is the order of the calls and no lock is needed. A resume
            # or first GET replaying under the lock makes us take the slow path.
            stream.seq += 1
            if nonblocking is not None:
                try:
                    nonblocking.append_nowait(self.session_id, stream.stream_id, stream.seq, data)
                except StoreUnavailable as exc:  # counted like any store call
                    self.store_guard.record_failure("event append", str(exc))
            full = self._deliver(
                stream, SseEvent(stream.event_id(stream.seq), data), wait=wait_for_reader
            )
            if full is not None:
                await self._wait_for_reader(full, wait_for_reader)
            return
        async with stream.lock:
            stream.seq += 1
            seq = stream.seq
            # Bounded (store_timeout; at once while the store is known to be
            # down): the event still goes out live; only its replay is lost.
            # (A failure was counted and logged by the guard; only the replay is lost.)
            with contextlib.suppress(StoreUnavailable):
                await self.store_guard.call(
                    "event append", store.append, self.session_id, stream.stream_id, seq, data
                )
            full = self._deliver(stream, SseEvent(stream.event_id(seq), data), wait=wait_for_reader)
        if full is not None:
            # Outside the lock: the event is queued in order already, and a
            # resume (which takes the lock to replace this reader) must not
            # wait for the reader it replaces.
            await self._wait_for_reader(full, wait_for_reader)

    def _end_stream(self, stream: _OutboundStream) -> None:
        self._streams.pop(stream.stream_id, None)
        if stream.reader is not None:
            stream.reader.end()

    def _end_all_streams(self) -> None:
        """End every attached response and forget every stream (the session finished)."""
        for stream in self._streams.values():
            if stream.reader is not None:
                stream.reader.end()
                stream.reader = None
        self._streams.clear()
        self._request_streams.clear()
        self.clock.streams = 0

    # -- the GET stream, resume, drain -------------------------------------------------

    async def open_standalone_stream(self) -> EventStream | None:
        """Attach a GET response to the standalone stream, or ``None`` if one is attached.

        The first GET of a session also receives what was sent before any GET
        was open (for example, JSON-mode logs of an earlier call), as far as
        the event store kept it: those messages were waiting for a listener.
        """
        stream = self._standalone
        if stream.reader is not None:
            return None
        self.clock.used = True  # busy while attached; the detach counts as activity
        if stream.ever_attached or self.event_store is None or stream.seq == 0:
            return self._attach(stream)
        async with stream.lock:
            if stream.reader is not None:
                return None
            try:
                stored = await self.store_guard.call(
                    "event replay",
                    self.event_store.replay_after,
                    self.session_id,
                    stream.stream_id,
                    0,
                )
            except (EventsPurged, StoreUnavailable):
                stored = ()
            replay = [SseEvent(stream.event_id(e.seq), e.data) for e in stored]
            return self._attach(stream, replay)

    async def resume(self, last_event_id: str) -> EventStream:
        """Reattach a client to a stream after ``Last-Event-ID``, replaying what it missed.

        Raises:
            UnknownEventId: The id names no stream of this session.
            EventsPurged: The store no longer holds everything after the id.
        """
        stream_id, after = parse_event_id(last_event_id)
        stream = self._streams.get(stream_id)
        if self.event_store is None:
            if stream is None:
                raise UnknownEventId("this server keeps no events to resume from")
            replay: Sequence[SseEvent] = ()
            async with stream.lock:
                if after != stream.seq:
                    raise EventsPurged("this server keeps no events to replay")
                return self._attach(stream)
        if stream is None:
            # A finished stream, or one from before a restore (another process
            # wrote it): replay what the store holds.
            stored = await self.store_guard.call(
                "event replay", self.event_store.replay_after, self.session_id, stream_id, after
            )
            replay = [SseEvent(_event_ids.event_id(stream_id, e.seq), e.data) for e in stored]
            if _event_ids.is_standalone(stream_id):
                # An earlier GET stream: after its backlog, this response goes on
                # as the session's live GET stream.
                if self._standalone.reader is not None:
                    raise UnknownEventId("this session already has an open GET stream")
                self.clock.used = True
                handle = self._attach(self._standalone, replay)
                handle.priming = None
                return handle
            if not stored:
                raise UnknownEventId(f"no stream {stream_id!r} to resume in this session")
            finished = EventStream(stream_id, replay=replay)
            finished.end()
            return finished
        if stream.reply_mode != "sse":
            raise UnknownEventId("JSON replies cannot be resumed")
        async with stream.lock:
            if after > stream.seq:
                raise UnknownEventId(f"Last-Event-ID {last_event_id!r} is from the future")
            stored = await self.store_guard.call(
                "event replay", self.event_store.replay_after, self.session_id, stream_id, after
            )
            if [e.seq for e in stored] != list(range(after + 1, stream.seq + 1)):
                # This process knows the stream's length: anything short of
                # every event after the id is a gap, whatever the store said.
                raise EventsPurged(
                    f"stream {stream_id!r}: events {after + 1}..{stream.seq} are not all stored"
                )
            replay = [SseEvent(stream.event_id(e.seq), e.data) for e in stored]
            self.clock.used = True
            handle = self._attach(stream, replay)
            handle.priming = None
            return handle

    def end_connections(self, retry_ms: int, *, standalone_only: bool = False) -> None:
        """Send a reconnect hint on attached responses and end them (graceful drain).

        With *standalone_only*, only the GET stream: request streams then carry
        their answers to the end.
        """
        for stream in list(self._streams.values()):
            reader = stream.reader
            if reader is None or (standalone_only and not stream.standalone):
                continue
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                reader.put(SseEvent(None, b"", retry_ms))  # through, full or not
            reader.end()

    # -- the Peer protocol (for Context) -----------------------------------------------

    def close_request_stream(self, request_id: RequestId) -> None:
        """End the HTTP response carrying *request_id* (SEP-1699 polling)."""
        stream = self._request_streams.get(request_id)
        if stream is None or stream.reader is None or stream.reply_mode != "sse":
            return
        if self.event_store is None:
            return  # the client could not get the rest back
        stream.reader.end()

    def _stream_for(self, related_request: RequestId | None) -> _OutboundStream:
        if related_request is not None:
            stream = self._request_streams.get(related_request)
            if stream is not None and stream.reply_mode == "sse":
                return stream
        return self._standalone

    async def send_notification(
        self, notification: Notification, *, related_request: RequestId | None
    ) -> None:
        await self._emit(self._stream_for(related_request), notification)
        # A schedule point even when nothing was awaited: a handler that only
        # logs or reports progress must not starve the other tasks.
        await trio.lowlevel.checkpoint()

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification on the standalone (GET) stream, never waiting for its reader.

        A broadcast goes to every session in turn: one stalled reader must not
        hold the others' notifications up, so a reader with a full buffer is
        dropped at once (its client resumes with ``Last-Event-ID``).
        """
        await self._emit(self._standalone, Notification(method, params), wait_for_reader=False)
        await trio.lowlevel.checkpoint()
