"""The open ``subscriptions/listen`` streams of one instance, bounded.

2026-07-28 replaces the GET stream with ``subscriptions/listen``: a POST whose
SSE response is the stream. :class:`ListenHub` owns every such stream: it
opens one (acknowledgement first), hands each change to the streams whose
filter wants it (tagged with their subscription id), and ends them with a
``SubscriptionsListenResult`` when the server stops them. It is the one
place of the listen-stream bounds (:class:`ListenLimits`): how many streams
may be open at once, in all and per client, how long one may stay open, and
how much one stream may have unread before its slow reader loses it. No task
per stream: the HTTP response reads its :class:`EventStream`, delivery is a
non-blocking put, and one task (:meth:`ListenHub.run`) ends the streams that
reach their lifetime, earliest first.
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
from collections import OrderedDict
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

__all__ = ["ListenHub", "ListenLimits", "ListenPolicy", "ListenStatistics"]

logger = logging.getLogger("trio_mcp_sessions.listen")

#: Listen streams open at once, per instance (the SDKs' cap).
MAX_LISTEN_STREAMS: Final = 1024
#: Listen streams one client key may have open at once.
MAX_LISTEN_STREAMS_PER_CLIENT: Final = 32
#: Seconds a listen stream stays open before it is ended gracefully.
LISTEN_MAX_LIFETIME: Final = 3600.0
#: Notifications a listen stream may have unread before it is ended.
LISTEN_BUFFER_EVENTS: Final = 256
#: Bytes of notifications a listen stream may have unread before it is ended.
LISTEN_BUFFER_BYTES: Final = 64 * 1024
#: Seconds a client refused at the cap is told to wait (``Retry-After``).
_RETRY_AFTER: Final = 5.0


class ListenPolicy(enum.Enum):
    """What happens when ``subscriptions/listen`` arrives at a listen-stream cap."""

    REJECT = "reject"
    """Refuse the new stream (HTTP 503 with ``Retry-After``, before its
    acknowledgement); the open ones are untouched. The default: a new
    stream never ends someone else's."""
    LEAST_RECENTLY_DELIVERED = "least_recently_delivered"
    """End the stream that was given a notification longest ago (or opened
    longest ago, if none was) gracefully, with its ``SubscriptionsListenResult``,
    then open the new one. At the per-client cap the victim is one of that
    client's own streams (often one whose connection silently died); at the
    global cap it is any client's."""


@dataclass(frozen=True, slots=True)
class ListenLimits:
    """The bounds of ``subscriptions/listen`` streams (2026-07-28), per instance.

    Attributes:
        max_streams: Streams open at once; at it, a new one is refused or
            makes room (:attr:`policy`).
        max_streams_per_client: Streams one client key may have open at
            once (the key of :class:`CallLimits`: the peer address, or the
            principal the application names; never ``clientInfo``). A
            request whose key is ``None`` is bound by :attr:`max_streams` only.
        max_lifetime: Seconds a stream stays open; then it is ended with a
            ``SubscriptionsListenResult`` and its client may listen again
            (``None``: no limit). Without it, a stream held by a client that
            vanished without closing its connection keeps its slot until TCP
            gives up on it.
        policy: What a listen at either cap does (:class:`ListenPolicy`).
        max_buffered_events: Notifications one stream may have unread; a
            stream whose reader falls that far behind is ended (it gets what
            it has not read, then a ``SubscriptionsListenResult``) and counted
            in ``ListenStatistics.ended_slow``.
        max_buffered_bytes: The same bound in bytes of notification data.
    """

    max_streams: int = MAX_LISTEN_STREAMS
    max_buffered_events: int = LISTEN_BUFFER_EVENTS
    max_buffered_bytes: int = LISTEN_BUFFER_BYTES
    max_streams_per_client: int = MAX_LISTEN_STREAMS_PER_CLIENT
    max_lifetime: float | None = LISTEN_MAX_LIFETIME
    policy: ListenPolicy = ListenPolicy.REJECT

    def __post_init__(self) -> None:
        for name in (
            "max_streams",
            "max_buffered_events",
            "max_buffered_bytes",
            "max_streams_per_client",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        lifetime = self.max_lifetime
        if lifetime is not None:
            if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
                raise TypeError(f"max_lifetime must be a number of seconds, not {lifetime!r}")
            if not (math.isfinite(lifetime) and lifetime > 0):
                raise ValueError(f"max_lifetime must be positive and finite, got {lifetime}")
        if isinstance(self.policy, str):
            try:
                object.__setattr__(self, "policy", ListenPolicy(self.policy))
            except ValueError:
                names = ", ".join(p.value for p in ListenPolicy)
                raise ValueError(f"policy must be one of {names}, not {self.policy!r}") from None
        if not isinstance(self.policy, ListenPolicy):
            raise TypeError(f"policy must be a ListenPolicy, not {self.policy!r}")


@dataclass(frozen=True, slots=True)
class ListenStatistics:
    """What the listen hub holds and did (see :meth:`ListenHub.statistics`).

    Attributes:
        open_streams: Listen streams open now.
        max_streams: Their cap (:attr:`ListenLimits.max_streams`).
        opened: Streams acknowledged since start.
        refused: Listen requests refused at a cap or while draining.
        ended_slow: Streams ended because their reader fell behind (the
            per-stream buffer bound).
        closed_by_server: Streams the server ended gracefully (drain,
            shutdown, ``ended_slow``, ``ended_lifetime``, ``evicted``), each
            with a ``SubscriptionsListenResult``.
        delivered: Notifications put on listen streams.
        listening_clients: Client keys with at least one stream open now.
        max_streams_per_client: :attr:`ListenLimits.max_streams_per_client`.
        refused_per_client: Of ``refused``, those at the per-client cap.
        ended_lifetime: Streams ended at :attr:`ListenLimits.max_lifetime`.
        evicted: Streams ended to make room for a new one
            (:attr:`ListenPolicy.LEAST_RECENTLY_DELIVERED`), at either cap.
        ended_token_expired: Streams ended when their access token expired
            (under a resource server), before their lifetime.
    """

    open_streams: int
    max_streams: int
    opened: int
    refused: int
    ended_slow: int
    closed_by_server: int
    delivered: int
    listening_clients: int
    max_streams_per_client: int
    refused_per_client: int
    ended_lifetime: int
    evicted: int
    ended_token_expired: int = 0


@final
class _Listener:
    """One open stream: its id, what it wants, where it goes, whose it is, when it ends."""

    __slots__ = (
        "by_token",
        "client",
        "closing",
        "expires_at",
        "filter",
        "stream",
        "subscription_id",
    )

    def __init__(
        self,
        subscription_id: RequestId,
        filter: SubscriptionFilter,
        stream: EventStream,
        closing: bytes,
        client: str | None,
        expires_at: float,
        by_token: bool = False,
    ) -> None:
        self.subscription_id = subscription_id
        self.filter = filter
        self.stream = stream
        self.closing = closing
        self.client = client
        self.expires_at = expires_at
        #: It ends when its access token expires, before its lifetime.
        self.by_token = by_token


@final
class ListenHub:
    """Every open listen stream of this instance, under :class:`ListenLimits`.

    :meth:`deliver` is what a broadcast calls (a change listener): it never
    waits, so one slow reader holds nobody up; a reader whose backlog is full
    is ended instead. Time is trio's clock, passed in as ``now`` (sans-IO);
    :meth:`run` is the one task that ends streams at their lifetime.
    """

    def __init__(self, limits: ListenLimits | None = None) -> None:
        self.limits = limits if limits is not None else ListenLimits()
        self._listeners: OrderedDict[int, _Listener] = OrderedDict()
        # (expires_at, key), earliest first: a lifetime, or an access token's end
        # when that comes sooner. Entries of closed streams go when they surface
        # (or when they outnumber the open ones).
        self._expiries: list[tuple[float, int]] = []
        # Least recently delivered first: all of them, and per client key.
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._by_client: dict[str, OrderedDict[int, None]] = {}
        self._next_key = 0
        self._closed = False
        self._opened_event: trio.Event | None = None
        self._opened = 0
        self._refused = 0
        self._refused_per_client = 0
        self._ended_slow = 0
        self._ended_lifetime = 0
        self._ended_token_expired = 0
        self._evicted = 0
        self._closed_by_server = 0
        self._delivered = 0

    def open(
        self,
        subscription_id: RequestId,
        honoured: SubscriptionFilter,
        *,
        now: float,
        client_key: str | None = None,
        server_info: Mapping[str, Any] | None = None,
        ends_by: float | None = None,
    ) -> EventStream:
        """A new stream whose first event is the acknowledgement of *honoured*.

        Args:
            now: Trio's clock (:func:`trio.current_time`): the lifetime starts here.
            client_key: Whose stream it is, for the per-client cap (``None``: no key).
            ends_by: Trio time the stream must end by, whatever its lifetime
                (its access token expires then); ended the same graceful way.

        Raises:
            ServiceUnavailable: At a cap under :attr:`ListenPolicy.REJECT`, or
                once :meth:`close_all` ran.
        """
        if self._closed:
            self._refused += 1
            raise ServiceUnavailable("the server is shutting down", retry_after=_RETRY_AFTER)
        limits = self.limits
        evict = limits.policy is ListenPolicy.LEAST_RECENTLY_DELIVERED
        own = self._by_client.get(client_key) if client_key is not None else None
        if own is not None and len(own) >= limits.max_streams_per_client:
            if not evict:
                self._refused += 1
                self._refused_per_client += 1
                raise ServiceUnavailable(
                    f"too many subscriptions/listen streams are open for this client "
                    f"(at most {limits.max_streams_per_client}); close one or retry later",
                    retry_after=_RETRY_AFTER,
                )
            self._evict(next(iter(own)))
        if len(self._listeners) >= limits.max_streams:
            if not evict:
                self._refused += 1
                raise ServiceUnavailable(
                    f"too many subscriptions/listen streams are open "
                    f"(at most {limits.max_streams}); retry later",
                    retry_after=_RETRY_AFTER,
                )
            self._evict(next(iter(self._recent)))
        key = self._next_key
        self._next_key += 1
        stream = EventStream(
            "l",
            on_detach=partial(self._forget, key),
            max_buffer=limits.max_buffered_events,
            max_buffer_bytes=limits.max_buffered_bytes,
        )
        lifetime = limits.max_lifetime
        expires_at = math.inf if lifetime is None else now + lifetime
        by_token = ends_by is not None and ends_by < expires_at
        if by_token:
            assert ends_by is not None
            expires_at = ends_by
        listener = _Listener(
            subscription_id,
            honoured,
            stream,
            encode(closing_result(subscription_id, server_info)),
            client_key,
            expires_at,
            by_token,
        )
        self._listeners[key] = listener
        if expires_at < math.inf:
            if len(self._expiries) > 2 * len(self._listeners) + 64:
                self._expiries = [
                    (other.expires_at, k)
                    for k, other in self._listeners.items()
                    if other.expires_at < math.inf and k != key
                ]
                heapq.heapify(self._expiries)
            heapq.heappush(self._expiries, (expires_at, key))
        self._recent[key] = None
        if client_key is not None:
            self._by_client.setdefault(client_key, OrderedDict())[key] = None
        stream.put(SseEvent(None, encode(acknowledgement(subscription_id, honoured))))
        self._opened += 1
        if self._opened_event is not None:
            self._opened_event.set()
        return stream

    def _forget(self, key: int) -> None:
        listener = self._listeners.pop(key, None)
        if listener is None:
            return
        del self._recent[key]
        client = listener.client
        if client is not None:
            own = self._by_client[client]
            del own[key]
            if not own:
                del self._by_client[client]

    def _evict(self, key: int) -> None:
        listener = self._listeners[key]
        self._evicted += 1
        logger.debug(  # counted in ListenStatistics.evicted; a warning per listen would flood
            "listen stream %r ended to make room for a new one (%s)",
            listener.subscription_id,
            self.limits.policy.value,
        )
        self._end(key, listener)

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
            self._recent.move_to_end(key)
            if listener.client is not None:
                self._by_client[listener.client].move_to_end(key)
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

    def next_expiry(self) -> float | None:
        """When the next open stream reaches its end (``None``: nothing to end)."""
        expiries = self._expiries
        while expiries:
            at, key = expiries[0]
            listener = self._listeners.get(key)
            if listener is not None and listener.expires_at == at:
                return at
            heapq.heappop(expiries)  # a stream that closed earlier
        return None

    def expire(self, now: float) -> int:
        """End, gracefully, every stream whose lifetime (or token) is over at *now*; how many."""
        ended = 0
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            at, key = heapq.heappop(expiries)
            listener = self._listeners.get(key)
            if listener is None or listener.expires_at != at:
                continue
            if listener.by_token:
                self._ended_token_expired += 1
            else:
                self._ended_lifetime += 1
            ended += 1
            self._end(key, listener)
        return ended

    async def run(self) -> None:
        """End streams at their lifetime or their token's end, earliest first, until cancelled.

        One task for every stream: it sleeps until the earliest end (on
        trio's clock), or until a stream opens (it may end sooner).
        """
        while True:
            deadline = self.next_expiry()
            self._opened_event = trio.Event()
            try:
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await self._opened_event.wait()
            finally:
                self._opened_event = None
            self.expire(trio.current_time())

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
            listening_clients=len(self._by_client),
            max_streams_per_client=self.limits.max_streams_per_client,
            refused_per_client=self._refused_per_client,
            ended_lifetime=self._ended_lifetime,
            ended_token_expired=self._ended_token_expired,
            evicted=self._evicted,
        )
