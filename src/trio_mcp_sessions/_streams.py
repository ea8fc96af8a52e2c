"""One outbound stream as an HTTP response reads it: the events to write, in order.

The one object between a session's producers and one HTTP response (like
trio's ``_channel.py``): bounded, with back-pressure, and a waker that lets a
single task wait for news or for the client going away. The transport reads
it; sessions (or a custom session manager) write it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "STREAM_BUFFER",
    "STREAM_BUFFER_BYTES",
    "WRITE_TIMEOUT",
    "EventStream",
    "SseEvent",
]

#: Seconds a reader with a full buffer may take nothing before it is dropped (the default).
WRITE_TIMEOUT: Final = 30.0
#: Events an attached HTTP response may have unread before its producers wait.
STREAM_BUFFER: Final = 64
#: Bytes an attached HTTP response may have unread before its producers wait.
STREAM_BUFFER_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event for the transport to write. Empty ``data`` with an id is a priming event."""

    event_id: str | None
    data: bytes
    retry_ms: int | None = None


@final
class EventStream:
    """One outbound stream as an HTTP response sees it: events to write, in order.

    Write :attr:`priming` (if any), then :attr:`replay`, then every event
    :meth:`receive` (or :meth:`receive_nowait`, :meth:`take_ready`, or ``async
    for``) yields until it raises :exc:`trio.EndOfChannel`. Call :meth:`detach`
    when the HTTP response ends for any reason (client gone, server done); it
    is idempotent.

    The producer (the session, or a custom :class:`SessionManager`) calls
    :meth:`put` or :meth:`send_nowait`, and :meth:`end`. The buffer between
    them is bounded (*max_buffer* events, *max_buffer_bytes* bytes), with
    back-pressure rather than loss: :meth:`put` always queues, so concurrent
    producers keep their order, and a producer that finds the buffer full
    waits in :meth:`wait_writable` until the reader takes. A reader that keeps
    up never loses an event; one that takes nothing for the write timeout is
    dropped (:meth:`drop`), and its client resumes with ``Last-Event-ID``.

    It is lighter than a memory channel (one object, a small buffer) because
    a server holds one per open GET stream, and it lets one task wait for
    either news on the stream or the client going away (:meth:`set_waker`).

    Args:
        stream_id: The stream's id (event ids are ``<stream_id>_<n>``).
        priming: A priming event to write first, or ``None``.
        replay: Events to write before live ones (a resumed stream's backlog).
        on_detach: Called once, with no arguments, by the first :meth:`detach`
            or :meth:`drop`.
        max_buffer: Unread events at which the buffer is full.
        max_buffer_bytes: Unread bytes of event data at which it is full.
    """

    __slots__ = (
        "_buffer",
        "_buffered_bytes",
        "_detached",
        "_dropped",
        "_ended",
        "_max_buffer",
        "_max_buffer_bytes",
        "_on_detach",
        "_space",
        "_waker",
        "priming",
        "replay",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: str,
        *,
        priming: SseEvent | None = None,
        replay: Sequence[SseEvent] = (),
        on_detach: Callable[[], object] | None = None,
        max_buffer: int = STREAM_BUFFER,
        max_buffer_bytes: int = STREAM_BUFFER_BYTES,
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        if max_buffer_bytes < 1:
            raise ValueError("max_buffer_bytes must be at least 1")
        self.stream_id = stream_id
        self.priming = priming
        self.replay = list(replay)
        self._buffer: collections.deque[SseEvent] | None = None
        self._buffered_bytes = 0
        self._max_buffer = max_buffer
        self._max_buffer_bytes = max_buffer_bytes
        self._ended = False
        self._detached = False
        self._dropped = False
        self._on_detach = on_detach
        self._waker: Callable[[], object] | None = None
        #: Producers waiting for the reader to take (made on first use).
        self._space: trio.lowlevel.ParkingLot | None = None

    # -- producer side --------------------------------------------------------------------

    def put(self, event: SseEvent) -> None:
        """Queue *event* for the reader, full or not (then :meth:`wait_writable`).

        Raises:
            trio.ClosedResourceError: The stream was ended by its producer.
            trio.BrokenResourceError: The reader has detached (or was dropped).
        """
        if self._ended:
            raise trio.ClosedResourceError("the stream has ended")
        if self._detached:
            raise trio.BrokenResourceError("the reader has detached")
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = collections.deque()
        buffer.append(event)
        self._buffered_bytes += len(event.data)
        self._wake()

    def send_nowait(self, event: SseEvent) -> None:
        """Queue *event* unless the buffer is full.

        Raises:
            trio.WouldBlock: The reader has a full buffer unread.
            trio.ClosedResourceError: The stream was ended by its producer.
            trio.BrokenResourceError: The reader has detached.
        """
        if not self._full():
            self.put(event)
            return
        if self._ended or self._detached:
            self.put(event)  # raises the right error
        raise trio.WouldBlock

    def _full(self) -> bool:
        buffer = self._buffer
        return buffer is not None and (
            len(buffer) >= self._max_buffer or self._buffered_bytes >= self._max_buffer_bytes
        )

    @property
    def writable(self) -> bool:
        """Whether a producer may go on: room in the buffer, or nobody left to wait for."""
        return self._ended or self._detached or not self._full()

    async def wait_writable(self, timeout: float) -> bool:
        """Wait until :attr:`writable`; drop a reader that takes nothing for *timeout* seconds.

        Each take by the reader starts the *timeout* again: a slow reader that
        keeps reading is waited for, a stalled one is not.

        Returns:
            ``False`` when the reader was dropped here, else ``True``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.writable:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        while not self.writable:
            if self._space is None:
                self._space = trio.lowlevel.ParkingLot()
            with trio.move_on_after(timeout) as waited:
                await self._space.park()
            if waited.cancelled_caught and not self.writable:
                self.drop()
                return False
        return True

    def end(self) -> None:
        """No more events: the reader gets what is buffered, then :exc:`trio.EndOfChannel`."""
        if not self._ended:
            self._ended = True
            self._wake()
            self._release_producers()

    def drop(self) -> None:
        """Give up on a stalled reader: discard what it has not taken and end the stream.

        The reader sees the end at its next look (the events are in the event
        store, if there is one, for its client to resume). Idempotent.
        """
        if self._dropped:
            return
        self._dropped = True
        self._buffer = None
        self._buffered_bytes = 0
        self.end()
        self._detached_now()

    @property
    def ended(self) -> bool:
        """Whether the producer has ended the stream (events may still be buffered)."""
        return self._ended

    @property
    def dropped(self) -> bool:
        """Whether the producer gave up on this reader (:meth:`drop`)."""
        return self._dropped

    def _wake(self) -> None:
        waker, self._waker = self._waker, None
        if waker is not None:
            waker()

    def _release_producers(self) -> None:
        if self._space is not None:
            self._space.unpark_all()

    # -- reader side ----------------------------------------------------------------------

    def receive_nowait(self) -> SseEvent:
        """The next event.

        Raises:
            trio.WouldBlock: Nothing is buffered yet.
            trio.EndOfChannel: The stream has ended and everything was read.
            trio.ClosedResourceError: This reader has detached.
        """
        if self._detached:
            raise trio.ClosedResourceError("the reader has detached")
        if self._buffer:
            event = self._buffer.popleft()
            self._buffered_bytes -= len(event.data)
            self._release_producers()
            return event
        if self._ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def take_ready(self) -> list[SseEvent]:
        """Every buffered event, at once (empty when none is)."""
        buffer = self._buffer
        if not buffer:
            return []
        ready = list(buffer)
        buffer.clear()
        self._buffered_bytes = 0
        self._release_producers()
        return ready

    def set_waker(self, waker: Callable[[], object] | None) -> None:
        """Call *waker* once, on the next event or the end of the stream (``None``: don't).

        Lets the reader wait for the stream and for something else in one
        task: the transport waits for the client's disconnect inside a cancel
        scope and passes its :meth:`~trio.CancelScope.cancel` here. Called at
        once when an event is already buffered or the stream has ended.
        """
        if waker is not None and (self._buffer or self._ended or self._detached):
            self._waker = None
            waker()
            return
        self._waker = waker

    async def receive(self) -> SseEvent:
        """Wait for :meth:`receive_nowait` to have something (a checkpoint).

        Raises:
            trio.EndOfChannel: The stream has ended and everything was read.
            trio.ClosedResourceError: This reader has detached.
            trio.BusyResourceError: Another task is already waiting.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            event = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return event
        if self._waker is not None:
            raise trio.BusyResourceError("another task is already waiting on this stream")
        ready = trio.Event()
        self._waker = ready.set
        try:
            await ready.wait()
        finally:
            if self._waker == ready.set:
                self._waker = None
        return self.receive_nowait()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SseEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def detach(self) -> None:
        """The HTTP response is over: drop what is buffered and tell the producer. Idempotent."""
        self._detached = True
        self._buffer = None
        self._buffered_bytes = 0
        self._wake()
        self._release_producers()
        self._detached_now()

    def _detached_now(self) -> None:
        callback, self._on_detach = self._on_detach, None
        if callback is not None:
            callback()
