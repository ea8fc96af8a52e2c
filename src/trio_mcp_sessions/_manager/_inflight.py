"""The exact in-flight caps: one ``trio.CapacityLimiter`` for all, one per client key.

A request takes its slot before its body is read, so a refused request
costs the server its headers and nothing else, and gives it back when its
response ends or its client leaves. ``CapacityLimiter`` makes the count
exact under any interleaving (the borrower is the slot, not a task, since a
slot may be released from another task than the one that took it); the
per-client limiters exist only while a key holds a slot, so their number is
bounded by the global cap.

Over the per-client cap the answer is :exc:`TooManyInFlight` (429: this
client is over its share) at once; over the global cap it is
:exc:`ServerBusy` (503: the server is), at once or after a short, bounded
wait in line when *queue_timeout* is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

import trio

from .._errors import ServerBusy, TooManyInFlight

__all__ = ["InflightLimiter", "InflightSlot", "InflightStatistics"]

#: ``Retry-After`` when a cap is full: requests in flight are usually short.
_RETRY_AFTER: Final = 1.0


@dataclass(frozen=True, slots=True)
class InflightStatistics:
    """A snapshot of one :class:`InflightLimiter` (see :meth:`InflightLimiter.statistics`).

    Attributes:
        in_flight: Slots held now (requests admitted and not yet finished).
        max_inflight: The global cap.
        clients: Client keys holding at least one slot now.
        queued: Requests waiting in line for a slot now.
        admitted: Slots handed out since the start.
        refused_busy: Requests refused at the global cap (503).
        refused_per_client: Requests refused at the per-client cap (429).
        queue_timeouts: Of :attr:`refused_busy`, those that waited in line
            and gave up (the rest found the line full, or no line).
    """

    in_flight: int
    max_inflight: int
    clients: int
    queued: int
    admitted: int
    refused_busy: int
    refused_per_client: int
    queue_timeouts: int


@final
class InflightSlot:
    """What an admitted request holds: one token, or one per request of a batch.

    :meth:`release` gives everything back and may be called any number of
    times (the response ending and the client leaving may both call it).
    """

    __slots__ = ("_borrowers", "_key", "_limiter")

    def __init__(self, limiter: InflightLimiter, key: str | None) -> None:
        self._limiter = limiter
        self._key = key
        self._borrowers: list[object] = []

    @property
    def held(self) -> int:
        """Tokens this slot holds now (0 once released)."""
        return len(self._borrowers)

    def extend_nowait(self, count: int) -> None:
        """Take *count* more tokens at once (the other requests of a batch), or none.

        Raises:
            TooManyInFlight: The client's cap has no room for all of them.
            ServerBusy: The global cap has no room for all of them.
        """
        taken: list[object] = []
        try:
            for _ in range(count):
                borrower = object()
                self._limiter._take_nowait(self._key, borrower)
                taken.append(borrower)
        except BaseException:
            for borrower in taken:
                self._limiter._give_back(self._key, borrower)
            raise
        self._borrowers.extend(taken)

    def release(self) -> None:
        """Give back every token (idempotent)."""
        borrowers, self._borrowers = self._borrowers, []
        for borrower in borrowers:
            self._limiter._give_back(self._key, borrower)


@final
class InflightLimiter:
    """The in-flight caps of one kind of request: global, and per client key.

    Args:
        max_inflight: Slots at most, for all clients together.
        max_per_client: Slots at most per client key (``None``: no per-client cap).
        queue_timeout: Seconds a request may wait in line for a global slot
            (0: refuse at once).
        max_queued: Requests that may wait in line at once (with *queue_timeout*).
        what: What is counted, for the refusal's message.
    """

    __slots__ = (
        "_admitted",
        "_clients",
        "_global",
        "_queue_timeouts",
        "_queued",
        "_refused_busy",
        "_refused_per_client",
        "max_per_client",
        "max_queued",
        "queue_timeout",
        "what",
    )

    def __init__(
        self,
        max_inflight: int,
        *,
        max_per_client: int | None = None,
        queue_timeout: float = 0.0,
        max_queued: int = 0,
        what: str = "requests",
    ) -> None:
        self._global = trio.CapacityLimiter(max_inflight)
        self.max_per_client = max_per_client
        self.queue_timeout = queue_timeout
        self.max_queued = max_queued if queue_timeout > 0 else 0
        self.what = what
        self._clients: dict[str, trio.CapacityLimiter] = {}
        self._queued = 0
        self._admitted = 0
        self._refused_busy = 0
        self._refused_per_client = 0
        self._queue_timeouts = 0

    @property
    def max_inflight(self) -> int:
        return int(self._global.total_tokens)

    def acquire_nowait(self, key: str | None) -> InflightSlot:
        """A slot for a request of client *key* (``None``: no per-client cap), or a refusal now.

        Raises:
            TooManyInFlight: *key* already holds its cap (HTTP 429).
            ServerBusy: The global cap is reached (HTTP 503).
        """
        slot = InflightSlot(self, key)
        slot.extend_nowait(1)
        self._admitted += 1
        return slot

    async def acquire(self, key: str | None) -> InflightSlot:
        """Like :meth:`acquire_nowait`, but wait in line up to *queue_timeout* for a global slot.

        The line is bounded (*max_queued*); a request that finds it full, or
        waits its time out, is refused as :meth:`acquire_nowait` refuses it.
        The client's own cap is never waited for.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        borrower = object()
        per_client = self._take_client_nowait(key, borrower)  # 429 at once
        try:
            self._global.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            if self._queued >= self.max_queued:
                self._release_client(key, per_client, borrower)
                self._refused_busy += 1
                raise self._busy() from None
        except BaseException:
            self._release_client(key, per_client, borrower)
            raise
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return self._admit(key, borrower)
        self._queued += 1
        try:
            with trio.move_on_after(self.queue_timeout):
                await self._global.acquire_on_behalf_of(borrower)
                return self._admit(key, borrower)
        except BaseException:
            self._release_client(key, per_client, borrower)
            raise
        finally:
            self._queued -= 1
        self._release_client(key, per_client, borrower)
        self._queue_timeouts += 1
        self._refused_busy += 1
        raise self._busy()

    def statistics(self) -> InflightStatistics:
        return InflightStatistics(
            in_flight=int(self._global.borrowed_tokens),
            max_inflight=self.max_inflight,
            clients=len(self._clients),
            queued=self._queued,
            admitted=self._admitted,
            refused_busy=self._refused_busy,
            refused_per_client=self._refused_per_client,
            queue_timeouts=self._queue_timeouts,
        )

    # -- the tokens --------------------------------------------------------------------

    def _admit(self, key: str | None, borrower: object) -> InflightSlot:
        slot = InflightSlot(self, key)
        slot._borrowers.append(borrower)
        self._admitted += 1
        return slot

    def _busy(self) -> ServerBusy:
        return ServerBusy(
            f"{self.max_inflight} {self.what} in flight, the server's limit; retry shortly",
            retry_after=_RETRY_AFTER,
        )

    def _take_client_nowait(self, key: str | None, borrower: object) -> trio.CapacityLimiter | None:
        cap = self.max_per_client
        if key is None or cap is None:
            return None
        limiter = self._clients.get(key)
        if limiter is None:
            limiter = self._clients[key] = trio.CapacityLimiter(cap)
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            self._refused_per_client += 1
            raise TooManyInFlight(
                f"this client already has {cap} {self.what} in flight; "
                "retry once some are answered",
                retry_after=_RETRY_AFTER,
            ) from None
        return limiter

    def _release_client(
        self, key: str | None, limiter: trio.CapacityLimiter | None, borrower: object
    ) -> None:
        if limiter is None or key is None:
            return
        limiter.release_on_behalf_of(borrower)
        if limiter.borrowed_tokens == 0:
            del self._clients[key]  # nobody waits on a per-client limiter

    def _take_nowait(self, key: str | None, borrower: object) -> None:
        per_client = self._take_client_nowait(key, borrower)
        try:
            self._global.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            self._release_client(key, per_client, borrower)
            self._refused_busy += 1
            raise self._busy() from None

    def _give_back(self, key: str | None, borrower: object) -> None:
        self._global.release_on_behalf_of(borrower)
        if key is not None and self.max_per_client is not None:
            self._release_client(key, self._clients.get(key), borrower)
