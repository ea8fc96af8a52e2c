"""The in-memory handle backend: a sans-IO table on trio's clock.

:class:`HandleTable` does all the work with an explicit ``now`` and never
yields, so a check and the insert it allows happen with no checkpoint in
between: the caps are exact under any interleaving of tasks, as a
:class:`trio.CapacityLimiter`'s count is. Orders are kept, not searched:
``_by_use`` (least recently used first) and ``_by_age`` (oldest first; trio's
clock never goes back, so insertion order is creation order), globally and
per principal, so eviction and expiry cost O(1) per record removed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

import trio

from ._backend import HandleCreated
from ._limits import HandlePolicy

if TYPE_CHECKING:
    from ._limits import HandleLimits

__all__ = ["HandleTable", "InMemoryHandleBackend"]


@dataclass(slots=True)
class _Entry:
    principal: str | None
    value: bytes
    created: float
    used: float


@dataclass(slots=True)
class _Orders:
    by_use: OrderedDict[str, None] = field(default_factory=OrderedDict)
    by_age: dict[str, None] = field(default_factory=dict)


@final
class HandleTable:
    """The records of one store, with both caps applied exactly (sans-IO)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._all = _Orders()
        self._owned: dict[str, _Orders] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, principal: str) -> int:
        """Live records of *principal* (expired ones not yet purged included)."""
        orders = self._owned.get(principal)
        return 0 if orders is None else len(orders.by_age)

    @property
    def principals(self) -> int:
        return len(self._owned)

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        del self._all.by_use[key], self._all.by_age[key]
        if entry.principal is not None:
            orders = self._owned[entry.principal]
            del orders.by_use[key], orders.by_age[key]
            if not orders.by_age:
                del self._owned[entry.principal]

    def purge(self, now: float, limits: HandleLimits) -> int:
        """Remove every expired record: those form a prefix of one order or the other."""
        removed = 0
        for order, idle in ((self._all.by_use, True), (self._all.by_age, False)):
            while order:
                key = next(iter(order))
                entry = self._entries[key]
                if idle:
                    gone = now - entry.used >= limits.idle
                else:
                    gone = now - entry.created >= limits.lifetime
                if not gone:
                    break
                self._remove(key)
                removed += 1
        return removed

    def _make_room(self, orders: _Orders, cap: int, policy: HandlePolicy) -> int:
        evicted = 0
        order = orders.by_use if policy is HandlePolicy.LEAST_RECENTLY_USED else orders.by_age
        while len(orders.by_age) >= cap:
            self._remove(next(iter(order)))
            evicted += 1
        return evicted

    def create(
        self, key: str, principal: str | None, value: bytes, now: float, limits: HandleLimits
    ) -> HandleCreated:
        expired = self.purge(now, limits)
        owned = self._owned.get(principal) if principal is not None else None
        if limits.policy is HandlePolicy.REJECT:
            full = len(self._entries) >= limits.max_handles or (
                owned is not None and len(owned.by_age) >= limits.max_per_principal
            )
            if full:
                return HandleCreated(False, 0, expired, len(self._entries))
        evicted = 0
        if owned is not None:
            evicted += self._make_room(owned, limits.max_per_principal, limits.policy)
        evicted += self._make_room(self._all, limits.max_handles, limits.policy)
        if key in self._entries:  # 192 random bits: never, but never two records either
            self._remove(key)
        self._entries[key] = _Entry(principal, value, now, now)
        self._all.by_use[key] = None
        self._all.by_age[key] = None
        if principal is not None:
            orders = self._owned.setdefault(principal, _Orders())
            orders.by_use[key] = None
            orders.by_age[key] = None
        return HandleCreated(True, evicted, expired, len(self._entries))

    def _live(
        self, key: str, principal: str | None, now: float, limits: HandleLimits
    ) -> tuple[_Entry | None, int]:
        expired = self.purge(now, limits)
        entry = self._entries.get(key)
        if entry is None or entry.principal != principal:
            return None, expired
        entry.used = now
        self._all.by_use.move_to_end(key)
        if principal is not None:
            self._owned[principal].by_use.move_to_end(key)
        return entry, expired

    def get(
        self, key: str, principal: str | None, now: float, limits: HandleLimits
    ) -> tuple[bytes | None, int]:
        entry, expired = self._live(key, principal, now, limits)
        return (None if entry is None else entry.value), expired

    def update(
        self, key: str, principal: str | None, value: bytes, now: float, limits: HandleLimits
    ) -> tuple[bool, int]:
        entry, expired = self._live(key, principal, now, limits)
        if entry is not None:
            entry.value = value
        return entry is not None, expired

    def delete(
        self, key: str, principal: str | None, now: float, limits: HandleLimits
    ) -> tuple[bool, int]:
        expired = self.purge(now, limits)
        entry = self._entries.get(key)
        if entry is None or entry.principal != principal:
            return False, expired
        self._remove(key)
        return True, expired

    def check(self) -> None:
        """Assert the orders and counts agree (for tests)."""
        assert set(self._all.by_use) == set(self._all.by_age) == set(self._entries)
        owned = 0
        for principal, orders in self._owned.items():
            assert orders.by_age, principal
            assert set(orders.by_use) == set(orders.by_age)
            assert all(self._entries[k].principal == principal for k in orders.by_age)
            owned += len(orders.by_age)
        assert owned == sum(1 for e in self._entries.values() if e.principal is not None)


@final
class InMemoryHandleBackend:
    """Handles in this process's memory, on trio's clock; lost on restart. The default."""

    def __init__(self) -> None:
        self.table = HandleTable()

    async def create(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> HandleCreated:
        await trio.lowlevel.checkpoint()
        return self.table.create(key, principal, value, trio.current_time(), limits)

    async def get(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bytes | None, int]:
        await trio.lowlevel.checkpoint()
        return self.table.get(key, principal, trio.current_time(), limits)

    async def update(
        self, key: str, principal: str | None, value: bytes, limits: HandleLimits
    ) -> tuple[bool, int]:
        await trio.lowlevel.checkpoint()
        return self.table.update(key, principal, value, trio.current_time(), limits)

    async def delete(
        self, key: str, principal: str | None, limits: HandleLimits
    ) -> tuple[bool, int]:
        await trio.lowlevel.checkpoint()
        return self.table.delete(key, principal, trio.current_time(), limits)

    async def purge_expired(self, limits: HandleLimits) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        return self.table.purge(trio.current_time(), limits), len(self.table)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
