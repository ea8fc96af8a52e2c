"""The creation budget: local sliding windows, a shared limiter with its fallback, refunds.

Nothing here knows what a session is: a caller spends from the budget for a
client key and gets a :class:`Receipt`, which it holds under any id it likes
until the thing it admitted either succeeded (:meth:`Admission.settle`) or
failed (:meth:`Admission.refund_held`), so that a failed creation costs the
client nothing. Sessionless requests can use the same budget.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from .._errors import RateLimited, StoreUnavailable
from .._ratelimit import SlidingWindowLimiter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._interface import RequestInfo
    from .._ratelimit import RateLimit, SharedRateLimiter, SlidingWindow
    from .._stores._guard import StoreGuard


class RateLimits(Protocol):
    """What a budget is made of: :class:`SessionLimits` and :class:`CallLimits` both are."""

    @property
    def rate_limit(self) -> RateLimit | None: ...

    @property
    def rate_limit_per_client(self) -> RateLimit | None: ...

    @property
    def rate_limit_key(self) -> Callable[[RequestInfo], str | None]: ...


__all__ = ["Admission", "Receipt"]


@dataclass(slots=True)
class Receipt:
    """What a successful rate-limit check spent, so a failed creation can refund it."""

    local: list[tuple[SlidingWindow, float]] = field(default_factory=list)
    shared: object | None = None


class Admission:
    """Creation rate limits, keyed by a client key, with receipts and refunds.

    Args:
        limits: Where the local windows and the client-key function come from.
        what: What is spent, for the refusal's message (``"sessions created"``).
        shared: A limiter shared by several instances; while it is
            unreachable the local windows apply (with its limits, unless
            *limits* sets its own).
        guard: The bounded path to the shared limiter's backend (with *shared*).
        spawn: Starts a background task, for a shared refund (with *shared*).
    """

    __slots__ = (
        "_held",
        "_key",
        "_local",
        "_per_client",
        "_shared",
        "guard",
        "rate_limited",
        "spawn",
        "what",
    )

    def __init__(
        self,
        limits: RateLimits,
        shared: SharedRateLimiter | None = None,
        guard: StoreGuard | None = None,
        spawn: Callable[..., None] | None = None,
        *,
        what: str = "sessions created",
    ) -> None:
        if shared is not None and (guard is None or spawn is None):
            raise TypeError("a shared limiter needs a guard and a spawn (for its refunds)")
        self.what = what
        self._local = SlidingWindowLimiter(
            limits.rate_limit or (shared.global_limit if shared else None),
            limits.rate_limit_per_client or (shared.per_client if shared else None),
        )
        self._shared = shared
        self._per_client = shared.per_client if shared is not None else limits.rate_limit_per_client
        self._key = limits.rate_limit_key
        self.guard = guard
        self.spawn = spawn
        self._held: dict[str, Receipt] = {}
        #: Admissions refused by a rate limit.
        self.rate_limited = 0

    @property
    def enabled(self) -> bool:
        """Whether any budget applies (else :meth:`admit` spends nothing)."""
        return self._shared is not None or self._local.enabled

    async def admit(self, info: RequestInfo) -> Receipt:
        """Spend one from the budget of *info*'s client, or raise :class:`RateLimited`."""
        receipt = Receipt()
        shared = self._shared
        if shared is None and not self._local.enabled:
            return receipt
        key = self._key(info) if self._per_client is not None else None
        wait = 0.0
        if shared is not None:
            assert self.guard is not None  # checked when built
            try:
                wait, receipt.shared = await self.guard.call("rate limit", shared.acquire, key)
            except StoreUnavailable:
                shared = None  # degraded: this instance's own windows apply
        if shared is None and self._local.enabled:
            wait, receipt.local = self._local.acquire(key, trio.current_time())
        if wait > 0:
            self.rate_limited += 1
            raise RateLimited(
                f"too many {self.what}; slow down", retry_after=max(1.0, math.ceil(wait))
            )
        return receipt

    def hold(self, holder: str, receipt: Receipt) -> None:
        """Keep *receipt* under *holder* until :meth:`settle` or :meth:`refund_held`."""
        self._held[holder] = receipt

    def settle(self, holder: str) -> None:
        """What *holder* spent stays spent (it succeeded, or it is gone)."""
        self._held.pop(holder, None)

    def refund_held(self, holder: str) -> None:
        """Give back what *holder* spent (its creation failed)."""
        self.refund(self._held.pop(holder, None))

    def refund(self, receipt: Receipt | None) -> None:
        if receipt is None:
            return
        self._local.refund(receipt.local)
        if receipt.shared is not None and self._shared is not None:
            assert self.spawn is not None  # checked when built
            self.spawn(self._refund_shared, self._shared.refund, receipt.shared)

    async def _refund_shared(
        self, refund: Callable[[object], Awaitable[None]], token: object
    ) -> None:
        assert self.guard is not None  # checked when built
        with contextlib.suppress(StoreUnavailable):
            await self.guard.call("rate refund", refund, token)
