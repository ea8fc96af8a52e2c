"""Sliding-window rate limits on session creation, global and keyed per client.

Sans-IO: every call takes ``now`` (the manager passes :func:`trio.current_time`,
so tests run on trio's mock clock). Each check is O(1) amortized: expired
timestamps leave from the left of a deque, and keys whose window has emptied
leave from the front of an LRU ordered by last use, so a flood of one-off
client addresses cannot grow memory without bound.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol, final, runtime_checkable

__all__ = ["RateLimit", "SharedRateLimiter", "SlidingWindow", "SlidingWindowLimiter"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most *max_creations* sessions per *window* seconds (a sliding window).

    Raises:
        ValueError: For a limit of zero creations (pass no rate limit instead)
            or a window that is not a positive number of seconds.
    """

    max_creations: int
    window: float

    def __post_init__(self) -> None:
        if isinstance(self.max_creations, bool) or not isinstance(self.max_creations, int):
            raise TypeError("max_creations must be an int")
        if self.max_creations < 1:
            raise ValueError(
                f"max_creations must be at least 1, got {self.max_creations}; "
                "to allow unlimited creation pass no rate limit instead"
            )
        if (
            isinstance(self.window, bool)
            or not isinstance(self.window, (int, float))
            or not self.window > 0
            or math.isinf(self.window)
        ):
            raise ValueError(f"window must be a positive number of seconds, got {self.window!r}")


@final
class SlidingWindow:
    """One sliding window: the timestamps of the creations it still counts."""

    __slots__ = ("limit", "stamps")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.stamps: deque[float] = deque()

    def _expire(self, now: float) -> None:
        cutoff = now - self.limit.window
        stamps = self.stamps
        while stamps and stamps[0] <= cutoff:
            stamps.popleft()

    def retry_after(self, now: float) -> float:
        """0 when a creation is allowed now, else seconds until one is."""
        self._expire(now)
        if len(self.stamps) < self.limit.max_creations:
            return 0.0
        return self.stamps[0] + self.limit.window - now

    def record(self, now: float) -> None:
        self.stamps.append(now)

    def refund(self, stamp: float) -> None:
        """Give back a creation recorded at *stamp* (its ``initialize`` failed)."""
        with contextlib.suppress(ValueError):  # already expired
            self.stamps.remove(stamp)


@final
class SlidingWindowLimiter:
    """A global window plus one window per client key.

    Args:
        global_limit: Shared by every client, or ``None``.
        per_client: Applied to each key separately, or ``None``.
        max_keys: Keys tracked at most; beyond it the least recently used key
            is forgotten (its clients then start afresh), which bounds memory
            even under a flood of distinct addresses.
    """

    def __init__(
        self,
        global_limit: RateLimit | None,
        per_client: RateLimit | None,
        *,
        max_keys: int = 100_000,
    ) -> None:
        self.global_window = SlidingWindow(global_limit) if global_limit is not None else None
        self.per_client = per_client
        self.max_keys = max_keys
        self._keys: OrderedDict[str, SlidingWindow] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.global_window is not None or self.per_client is not None

    def _sweep(self, now: float) -> None:
        # Keys are ordered by last use: the front ones are the stalest.
        assert self.per_client is not None
        cutoff = now - self.per_client.window
        while self._keys:
            key, window = next(iter(self._keys.items()))
            if window.stamps and window.stamps[-1] > cutoff:
                break
            del self._keys[key]

    def acquire(
        self, key: str | None, now: float
    ) -> tuple[float, list[tuple[SlidingWindow, float]]]:
        """Try to spend one creation for *key*.

        Returns:
            ``(retry_after, receipt)``: ``retry_after`` is 0 when allowed (the
            creation is then recorded and *receipt* can refund it), else the
            seconds until the tightest window frees a slot (nothing recorded).
        """
        windows: list[SlidingWindow] = []
        if self.global_window is not None:
            windows.append(self.global_window)
        if self.per_client is not None and key is not None:
            self._sweep(now)
            window = self._keys.get(key)
            if window is None:
                window = self._keys[key] = SlidingWindow(self.per_client)
                if len(self._keys) > self.max_keys:
                    self._keys.popitem(last=False)  # the least recently used key
            else:
                self._keys.move_to_end(key)
            windows.append(window)
        wait = max((w.retry_after(now) for w in windows), default=0.0)
        if wait > 0:
            return wait, []
        for window in windows:
            window.record(now)
        return 0.0, [(window, now) for window in windows]

    @staticmethod
    def refund(receipt: list[tuple[SlidingWindow, float]]) -> None:
        for window, stamp in receipt:
            window.refund(stamp)

    def tracked_keys(self) -> int:
        return len(self._keys)


@runtime_checkable
class SharedRateLimiter(Protocol):
    """A creation rate limiter shared by several server instances (e.g. through Redis).

    Attributes:
        global_limit: The limit shared by all clients, or ``None``.
        per_client: The limit per client key, or ``None``.
    """

    global_limit: RateLimit | None
    per_client: RateLimit | None

    async def acquire(self, key: str | None) -> tuple[float, object]:
        """Spend one creation: ``(0, receipt)`` when allowed, else ``(retry_after, None)``.

        Raises:
            StoreUnavailable: The backend failed.
        """
        ...

    async def refund(self, receipt: object) -> None:
        """Give back a creation whose ``initialize`` failed."""
        ...
