"""The budgets of 2026-07-28 requests: which windows a request spends from, kept bounded.

:class:`CallWindows` is sans-IO (plain numbers in, a decision out): it plans
which budgets of :class:`CallLimits` a request spends from (the call budget,
its method's, its tool's, or ``server/discover``'s own) and checks them all
at once, so a request is recorded in every window or in none, and a refusal
names the budget that refused. Per-client windows are kept per budget in an
LRU that forgets emptied keys and holds at most ``max_keys``, so neither a
flood of addresses nor one of tool names grows memory: only the names the
limits list get windows.

:class:`CallAdmission` applies it with trio: through a shared limiter
(Redis) behind a :class:`StoreGuard` when one is given, with this instance's
own windows while the shared one is unreachable.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, final, runtime_checkable

import trio

from .._errors import BudgetExceeded, StoreUnavailable
from .._ratelimit import SlidingWindow
from .._stores._guard import StoreGuard

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._interface import RequestInfo
    from .._options import ServerOptions
    from .._ratelimit import RateLimit, SharedRateLimiter
    from .._stores._guard import StoreGuardStatistics
    from ._limits import CallLimits, KeyedLimit

__all__ = [
    "Budget",
    "CallAdmission",
    "CallBudgetStatistics",
    "CallWindows",
    "SharedCallLimiter",
    "call_admission",
]

DISCOVER: Final = "server/discover"
TOOLS_CALL: Final = "tools/call"

BudgetKind = Literal["calls", "method", "tool", "discover"]

#: Client keys one per-client budget tracks at most (the least recently used go first).
MAX_KEYS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget of :class:`CallLimits`: what it limits and whether per client key.

    Attributes:
        kind: ``"calls"`` (every request but ``server/discover``),
            ``"method"``, ``"tool"`` or ``"discover"``.
        name: The method or tool name (``""`` for ``calls`` and ``discover``).
        per_client: ``True`` for a window per client key, ``False`` for one
            shared by all clients.
    """

    kind: BudgetKind
    name: str = ""
    per_client: bool = False

    @property
    def scope(self) -> str:
        return "per_client" if self.per_client else "global"

    def describe(self) -> str:
        """What a refused client reads: which budget, never anyone's numbers."""
        what = {
            "calls": "requests",
            "method": f"{self.name} requests",
            "tool": f"calls of tool {self.name!r}",
            "discover": f"{DISCOVER} requests",
        }[self.kind]
        whose = "from this client" if self.per_client else "from all clients together"
        return f"too many {what} {whose}; slow down"

    def _exceeded(self, retry_after: float) -> BudgetExceeded:
        """The refusal (429) that names this budget."""
        return BudgetExceeded(
            self.describe(),
            budget=self.kind,
            scope=self.scope,
            name=self.name,
            retry_after=retry_after,
        )


@runtime_checkable
class SharedCallLimiter(Protocol):
    """Call budgets shared by several server instances (e.g. :class:`RedisRateLimiter`)."""

    async def spend(
        self, windows: Sequence[tuple[str, str, str | None, RateLimit]]
    ) -> tuple[float, int]:
        """Record one request in every window or in none.

        Each window is ``(kind, name, client key or None for the global one,
        limit)``, as :class:`Budget` names them.

        Returns:
            ``(0, -1)`` when recorded, else ``(retry_after, index)``: the
            seconds until the window at *index* (the one that frees last)
            has room.

        Raises:
            StoreUnavailable: The backend failed.
        """
        ...


@final
class _KeyedWindows:
    """One per-client budget's windows, by client key, in least recently used order."""

    __slots__ = ("_keys", "limit", "max_keys")

    def __init__(self, limit: RateLimit, max_keys: int) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._keys: OrderedDict[str, SlidingWindow] = OrderedDict()

    def window(self, key: str, now: float) -> SlidingWindow:
        keys = self._keys
        cutoff = now - self.limit.window
        while keys:  # the front keys are the stalest: drop those whose window emptied
            front = next(iter(keys.values()))
            if front.stamps and front.stamps[-1] > cutoff:
                break
            keys.popitem(last=False)
        window = keys.get(key)
        if window is None:
            window = keys[key] = SlidingWindow(self.limit)
            if len(keys) > self.max_keys:
                keys.popitem(last=False)  # the least recently used key starts afresh
        else:
            keys.move_to_end(key)
        return window

    def __len__(self) -> int:
        return len(self._keys)


#: What a request spends from: each budget, its limit and where its windows are
#: (the one global window, or the per-client windows by key).
Plan = tuple[tuple[Budget, "RateLimit", "SlidingWindow | _KeyedWindows"], ...]


@final
class CallWindows:
    """Every budget of a :class:`CallLimits` as local sliding windows (sans-IO).

    Args:
        limits: The budgets.
        max_keys: Client keys each per-client budget tracks at most; beyond
            it the least recently used key is forgotten (its client starts
            afresh), which bounds memory under a flood of distinct keys.
    """

    def __init__(self, limits: CallLimits, *, max_keys: int = MAX_KEYS) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a positive int, got {max_keys!r}")
        self._keyed: list[_KeyedWindows] = []

        def entries(
            kind: BudgetKind, name: str, total: RateLimit | None, per_client: RateLimit | None
        ) -> Plan:
            plan: list[tuple[Budget, RateLimit, SlidingWindow | _KeyedWindows]] = []
            if total is not None:
                plan.append((Budget(kind, name), total, SlidingWindow(total)))
            if per_client is not None:
                keyed = _KeyedWindows(per_client, max_keys)
                self._keyed.append(keyed)
                plan.append((Budget(kind, name, per_client=True), per_client, keyed))
            return tuple(plan)

        def keyed(kind: BudgetKind, name: str, limit: KeyedLimit | None) -> Plan:
            return entries(kind, name, *((limit.total, limit.per_client) if limit else (None,) * 2))

        # Every plan is built here, once: a request only looks its plan up.
        self._default = entries("calls", "", limits.rate_limit, limits.rate_limit_per_client)
        self._methods = {
            m: self._default + keyed("method", m, lim) for m, lim in limits.method_limits.items()
        }
        tools_call = self._methods.get(TOOLS_CALL, self._default)
        self._tools = {
            t: tools_call + keyed("tool", t, lim) for t, lim in limits.tool_limits.items()
        }
        self._discover = keyed("discover", "", limits.discover_limit)
        self.enabled = bool(
            self._default or self._discover or any(self._methods.values()) or self._tools
        )
        """Whether any budget exists (else every plan is empty)."""

    def plan(self, method: str, tool: str | None = None) -> Plan:
        """The budgets a request for *method* (and *tool*, for ``tools/call``) spends from."""
        if method == DISCOVER:
            return self._discover
        if tool is not None and method == TOOLS_CALL:
            found = self._tools.get(tool)
            if found is not None:
                return found
        return self._methods.get(method, self._default)

    def acquire(self, plan: Plan, key: str | None, now: float) -> tuple[float, Budget | None]:
        """Spend one from every window of *plan* for client *key*, or from none.

        Per-client budgets do not apply to a request without a key.

        Returns:
            ``(0, None)`` when allowed (recorded), else ``(retry_after,
            budget)``: the budget whose window frees last (nothing recorded).
        """
        windows: list[tuple[Budget, SlidingWindow]] = []
        for budget, _, place in plan:
            if isinstance(place, SlidingWindow):
                windows.append((budget, place))
            elif key is not None:
                windows.append((budget, place.window(key, now)))
        wait, blocking = 0.0, None
        for budget, window in windows:
            free_in = window.retry_after(now)
            if free_in > wait:
                wait, blocking = free_in, budget
        if blocking is not None:
            return wait, blocking
        for _, window in windows:
            window.record(now)
        return 0.0, None

    def tracked_keys(self) -> int:
        """Per-client windows held, over every budget."""
        return sum(len(keyed) for keyed in self._keyed)


@dataclass(frozen=True, slots=True)
class CallBudgetStatistics:
    """A snapshot of the call budgets (:meth:`StreamableHTTPApp.call_statistics`).

    Attributes:
        admitted: Requests that spent from their budgets (and went on).
        refused: Requests refused (429), by the :class:`Budget` that refused.
        tracked_keys: Per-client windows this instance holds (bounded).
        shared: Whether the budgets are shared through a shared limiter.
        fallbacks: Requests decided by this instance's own windows because
            the shared limiter was unreachable.
        store: The shared limiter's guard (``None`` without one).
    """

    admitted: int = 0
    refused: dict[Budget, int] = field(default_factory=dict)
    tracked_keys: int = 0
    shared: bool = False
    fallbacks: int = 0
    store: StoreGuardStatistics | None = None


@final
class CallAdmission:
    """The call budgets, applied: shared when a shared limiter is given, else local.

    Args:
        limits: The budgets (:class:`CallLimits`).
        shared: Call budgets shared by several instances; while it is
            unreachable this instance's own windows apply.
        guard: The bounded path to *shared*'s backend (with *shared*).
        max_keys: See :class:`CallWindows`.
    """

    __slots__ = ("_admitted", "_fallbacks", "_key", "_refused", "_shared", "_windows", "guard")

    def __init__(
        self,
        limits: CallLimits,
        shared: SharedCallLimiter | None = None,
        guard: StoreGuard | None = None,
        *,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if shared is not None and guard is None:
            raise TypeError("a shared call limiter needs a guard")
        if shared is not None and not isinstance(shared, SharedCallLimiter):
            raise TypeError(f"not a SharedCallLimiter (no spend method): {shared!r}")
        self._windows = CallWindows(limits, max_keys=max_keys)
        self._shared = shared
        self._key = limits.rate_limit_key
        self.guard = guard
        self._admitted = 0
        self._fallbacks = 0
        self._refused: Counter[Budget] = Counter()

    @property
    def enabled(self) -> bool:
        """Whether any budget applies (else :meth:`admit` spends nothing)."""
        return self._windows.enabled

    async def admit(self, info: RequestInfo, method: str, tool: str | None = None) -> None:
        """Spend one from every budget of this request, or raise :class:`BudgetExceeded`.

        *tool* is the ``tools/call`` name, once the headers were checked
        against the body (an unchecked ``Mcp-Name`` could spend another
        tool's budget).
        """
        plan = self._windows.plan(method, tool)
        if not plan:
            await trio.lowlevel.checkpoint()
            return
        key = self._key(info) if any(budget.per_client for budget, *_ in plan) else None
        self._settle(*await self._spend(plan, key))

    def admit_nowait(self, info: RequestInfo, method: str, tool: str | None = None) -> None:
        """:meth:`admit` at once, when no budget applies or only local windows do.

        The request path takes this first: a scheduling round per request
        for nothing to wait on was a third of the cost of a sessionless call.

        Raises:
            trio.WouldBlock: The budgets are shared: ask with :meth:`admit`.
            BudgetExceeded: Over a budget.
        """
        plan = self._windows.plan(method, tool)
        if not plan:
            return
        if self._shared is not None:
            raise trio.WouldBlock
        key = self._key(info) if any(budget.per_client for budget, *_ in plan) else None
        self._settle(*self._windows.acquire(plan, key, trio.current_time()))

    def _settle(self, wait: float, blocking: Budget | None) -> None:
        if blocking is not None:
            self._refused[blocking] += 1
            raise blocking._exceeded(max(1.0, math.ceil(wait)))
        self._admitted += 1

    async def _spend(self, plan: Plan, key: str | None) -> tuple[float, Budget | None]:
        if self._shared is not None:
            assert self.guard is not None  # checked when built
            applied = [(b, lim) for b, lim, _ in plan if key is not None or not b.per_client]
            if not applied:
                await trio.lowlevel.checkpoint()
                return 0.0, None
            windows = [(b.kind, b.name, key if b.per_client else None, lim) for b, lim in applied]
            try:
                wait, index = await self.guard.call("call rate limit", self._shared.spend, windows)
            except StoreUnavailable:
                pass  # degraded: this instance's own windows apply
            else:
                if not wait > 0:
                    return 0.0, None
                if 0 <= index < len(applied):
                    return wait, applied[index][0]
            self._fallbacks += 1
        else:
            await trio.lowlevel.checkpoint()
        return self._windows.acquire(plan, key, trio.current_time())

    def statistics(self) -> CallBudgetStatistics:
        return CallBudgetStatistics(
            admitted=self._admitted,
            refused=dict(self._refused),
            tracked_keys=self._windows.tracked_keys(),
            shared=self._shared is not None,
            fallbacks=self._fallbacks,
            store=self.guard.statistics() if self.guard is not None else None,
        )


def call_admission(
    options: ServerOptions,
    explicit: SharedCallLimiter | None = None,
    creations: SharedRateLimiter | None = None,
) -> CallAdmission:
    """The call budgets of *options*, shared through *explicit* or, when it can
    (it has ``spend``), the creation limiter *creations*; guarded by the
    options' store timeout and circuit breaker.
    """
    shared: SharedCallLimiter | None = explicit
    if shared is None and isinstance(creations, SharedCallLimiter):
        shared = creations
    if shared is None:
        return CallAdmission(options.call_limits)
    guard = StoreGuard(
        "call_rate_limit",
        timeout=options.store_timeout,
        failure_threshold=options.store_failure_threshold,
        reset_after=options.store_probe_after,
    )
    return CallAdmission(options.call_limits, shared, guard)  # type-checks *shared*
