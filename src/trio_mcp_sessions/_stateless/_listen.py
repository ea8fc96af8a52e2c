"""The open ``subscriptions/listen`` streams of one instance, bounded.

2026-07-28 replaces the GET stream with ``subscriptions/listen``: a POST whose
SSE response is the stream. :class:`ListenHub` owns every such stream: it
opens one (acknowledgement first), hands each change to the streams whose
filter wants it (tagged with their subscription id), and ends them with a
``SubscriptionsListenResult`` when the server stops them. It is the one
place of the listen-stream bounds (:class:`ListenLimits`): how many streams
may be open at once, and how much one stream may have unread before its
slow reader loses it. No task per stream: the HTTP response reads its
:class:`EventStream`, and delivery is a non-blocking put.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, final

import trio

from .._errors import ServiceUnavailable
from .._protocol._jsonrpc import encode
from .._protocol._subscriptions import (
    CHANGE_METHODS,
    SubscriptionFilter,
    acknowledgement,
    closing_result,
    tagged,
)
from .._streams import EventStream, SseEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._protocol._jsonrpc import RequestId

__all__ = ["ListenHub", "ListenLimits", "ListenStatistics"]

logger = logging.getLogger("trio_mcp_sessions.listen")

#: Listen streams open at once, per instance (the SDKs' cap).
MAX_LISTEN_STREAMS: Final = 1024
#: Notifications a listen stream may have unread before it is ended.
LISTEN_BUFFER_EVENTS: Final = 256
#: Bytes of notifications a listen stream may have unread before it is ended.
LISTEN_BUFFER_BYTES: Final = 64 * 1024
#: Seconds a client refused at the cap is told to wait (``Retry-After``).
_RETRY_AFTER: Final = 5.0


@dataclass(frozen=True, slots=True)
class ListenLimits:
    """The bounds of ``subscriptions/listen`` streams (2026-07-28), per instance.

    Attributes:
        max_streams: Streams open at once; one more is refused before its
            acknowledgement (HTTP 503, ``Retry-After``) until one closes.
        max_buffered_events: Notifications one stream may have unread; a
            stream whose reader falls that far behind is ended (it gets what
            it has not read, then a ``SubscriptionsListenResult``) and counted
            in ``ListenStatistics.ended_slow``.
        max_buffered_bytes: The same bound in bytes of notification data.
    """

    max_streams: int = MAX_LISTEN_STREAMS
    max_buffered_events: int = LISTEN_BUFFER_EVENTS
    max_buffered_bytes: int = LISTEN_BUFFER_BYTES

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_buffered_events", "max_buffered_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True, slots=True)
class ListenStatistics:
    """What the listen hub holds and did (see :meth:`ListenHub.statistics`).

    Attributes:
        open_streams: Listen streams open now.
        max_streams: Their cap (:attr:`ListenLimits.max_streams`).
        opened: Streams acknowledged since start.
        refused: Listen requests refused at the cap or while draining.
        ended_slow: Streams ended because their reader fell behind (the
            per-stream buffer bound).
        closed_by_server: Streams the server ended gracefully (drain,
            shutdown, or ``ended_slow``), each with a ``SubscriptionsListenResult``.
        delivered: Notifications put on listen streams.
    """

    open_streams: int
    max_streams: int
    opened: int
    refused: int
    ended_slow: int
    closed_by_server: int
    delivered: int


@final
class _Listener:
    """One open stream: its id, what it wants, where it goes."""

    __slots__ = ("closing", "filter", "stream", "subscription_id")

    def __init__(
        self,
        subscription_id: RequestId,
        filter: SubscriptionFilter,
        stream: EventStream,
        closing: bytes,
    ) -> None:
        self.subscription_id = subscription_id
        self.filter = filter
        self.stream = stream
        self.closing = closing


@final
class ListenHub:
    """Every open listen stream of this instance, under :class:`ListenLimits`.

    :meth:`deliver` is what a broadcast calls (a change listener): it never
    waits, so one slow reader holds nobody up; a reader whose backlog is full
    is ended instead.
    """

    def __init__(self, limits: ListenLimits | None = None) -> None:
        self.limits = limits if limits is not None else ListenLimits()
        self._listeners: dict[int, _Listener] = {}
        self._next_key = 0
        self._closed = False
        self._opened = 0
        self._refused = 0
        self._ended_slow = 0
        self._closed_by_server = 0
        self._delivered = 0

    def open(
        self,
        subscription_id: RequestId,
        honoured: SubscriptionFilter,
        *,
        server_info: Mapping[str, Any] | None = None,
    ) -> EventStream:
        """A new stream whose first event is the acknowledgement of *honoured*.

        Raises:
            ServiceUnavailable: At the cap, or once :meth:`close_all` ran.
        """
        if self._closed:
            self._refused += 1
            raise ServiceUnavailable("the server is shutting down", retry_after=_RETRY_AFTER)
        if len(self._listeners) >= self.limits.max_streams:
            self._refused += 1
            raise ServiceUnavailable(
                f"too many subscriptions/listen streams are open "
                f"(at most {self.limits.max_streams}); retry later",
                retry_after=_RETRY_AFTER,
            )
        key = self._next_key
        self._next_key += 1
        stream = EventStream(
            "l",
            on_detach=partial(self._forget, key),
            max_buffer=self.limits.max_buffered_events,
            max_buffer_bytes=self.limits.max_buffered_bytes,
        )
        listener = _Listener(
            subscription_id,
            honoured,
            stream,
            encode(closing_result(subscription_id, server_info)),
        )
        self._listeners[key] = listener
        stream.put(SseEvent(None, encode(acknowledgement(subscription_id, honoured))))
        self._opened += 1
        return stream

    def _forget(self, key: int) -> None:
        self._listeners.pop(key, None)

    def deliver(self, method: str, params: Mapping[str, Any] | None) -> int:
        """Put *method* on every stream whose filter wants it; how many got it.

        Never waits: a stream whose reader has a full backlog is ended (what
        it has not read, then its ``SubscriptionsListenResult``).
        """
        if method not in CHANGE_METHODS:
            return 0
        count = 0
        for key, listener in list(self._listeners.items()):
            if not listener.filter.wants(method, params):
                continue
            event = SseEvent(None, encode(tagged(method, params, listener.subscription_id)))
            try:
                listener.stream.send_nowait(event)
            except trio.WouldBlock:
                self._ended_slow += 1
                logger.warning(
                    "listen stream %r fell %d notifications behind: ended",
                    listener.subscription_id,
                    self.limits.max_buffered_events,
                )
                self._end(key, listener)
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._forget(key)  # its client is gone
                continue
            count += 1
        self._delivered += count
        return count

    def _end(self, key: int, listener: _Listener) -> None:
        """End one stream gracefully: its result goes after what it has not read."""
        self._forget(key)
        stream = listener.stream
        if not stream.ended:
            try:
                stream.put(SseEvent(None, listener.closing))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            else:
                self._closed_by_server += 1
            stream.end()

    def close_all(self) -> None:
        """End every stream gracefully and open no more (drain, shutdown). Idempotent."""
        self._closed = True
        for key, listener in list(self._listeners.items()):
            self._end(key, listener)

    def statistics(self) -> ListenStatistics:
        return ListenStatistics(
            open_streams=len(self._listeners),
            max_streams=self.limits.max_streams,
            opened=self._opened,
            refused=self._refused,
            ended_slow=self._ended_slow,
            closed_by_server=self._closed_by_server,
            delivered=self._delivered,
        )
