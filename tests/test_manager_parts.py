"""The manager's parts on their own: the victim choice and the table with stand-ins,
admission with plain numbers and a client key (no session anywhere)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from trio_mcp_sessions import (
    CloseReason,
    RateLimit,
    RateLimited,
    RequestInfo,
    SessionLimits,
    StoreUnavailable,
    TooManySessions,
)
from trio_mcp_sessions._manager._admission import Admission
from trio_mcp_sessions._manager._limits import EvictionPolicy
from trio_mcp_sessions._manager._table import SessionTable, choose_victim
from trio_mcp_sessions._stores._guard import StoreGuard

LRA = EvictionPolicy.LEAST_RECENTLY_ACTIVE


@dataclass
class Stub:
    """What the victim choice reads of a session, and nothing else."""

    name: str
    is_open: bool = True
    busy: bool = False
    client_info: object | None = "initialized"

    def close(self, reason: CloseReason) -> None:
        self.is_open = False


def table(*stubs: Stub) -> dict[str, Stub]:
    return {s.name: s for s in stubs}


def lru(*names: str) -> OrderedDict[str, None]:
    return OrderedDict.fromkeys(names)


def test_least_recently_active_takes_the_first_idle_open_session() -> None:
    sessions = table(Stub("a"), Stub("b"), Stub("c"))
    idle = lru("b", "a", "c")
    assert choose_victim(LRA, sessions, idle) is sessions["b"]
    assert list(idle) == ["a", "c"]  # the victim left the candidates


def test_least_recently_active_drops_stale_entries_on_the_way() -> None:
    # The LRU can lag behind: gone, closed and (again) busy sessions are skipped and dropped.
    sessions = table(Stub("closed", is_open=False), Stub("busy", busy=True), Stub("idle"))
    idle = lru("gone", "closed", "busy", "idle", "later")
    assert choose_victim(LRA, sessions, idle) is sessions["idle"]
    assert list(idle) == ["later"]


def test_least_recently_active_refuses_when_nobody_is_idle() -> None:
    sessions = table(Stub("a", busy=True), Stub("b", busy=True))
    idle = lru("a")
    assert choose_victim(LRA, sessions, idle) is None
    assert not idle
    assert choose_victim(LRA, sessions, lru()) is None


def test_oldest_takes_creation_order_busy_or_not() -> None:
    sessions = table(
        Stub("closing", is_open=False),
        Stub("initializing", client_info=None),
        Stub("old", busy=True),
        Stub("new"),
    )
    idle = lru("new")
    assert choose_victim(EvictionPolicy.OLDEST, sessions, idle) is sessions["old"]
    assert list(idle) == ["new"]  # the idle order is not the oldest policy's queue
    assert choose_victim(EvictionPolicy.OLDEST, table(Stub("x", client_info=None)), idle) is None


def test_reject_never_evicts() -> None:
    assert choose_victim(EvictionPolicy.REJECT, table(Stub("a")), lru("a")) is None


async def test_the_table_holds_one_slot_per_session_and_tracks_busy() -> None:
    t: SessionTable[Stub] = SessionTable(2)
    a, b = Stub("a"), Stub("b")
    assert t.take_nowait("a")
    t.add("a", a)
    assert t.take_nowait("b")
    t.add("b", b)
    assert not t.take_nowait("c")  # the cap is exact
    assert t.busy == {"a", "b"}  # initializing: not candidates yet
    assert t.victim(LRA) is None
    t.mark("b", busy=False)
    t.mark("a", busy=False)
    assert list(t.idle) == ["b", "a"]
    assert not t.busy
    t.mark("b", busy=True)
    assert list(t.idle) == ["a"]
    assert t.busy == {"b"}
    assert t.victim(LRA) is a
    t.remove("a", a)
    assert len(t) == 1
    assert t.get("a") is None
    assert t.limiter.borrowed_tokens == 1
    assert t.take_nowait("c")  # the slot came back
    with pytest.raises(trio.WouldBlock):
        t.limiter.acquire_on_behalf_of_nowait("d")


async def test_a_stale_remove_leaves_the_new_holder_of_an_id_alone() -> None:
    t: SessionTable[Stub] = SessionTable(2)
    old, new = Stub("x"), Stub("x")
    t.take_nowait("x")
    t.add("x", new)
    t.remove("x", old)  # not the session the table holds under that id
    assert t.get("x") is new


def admission(limits: SessionLimits, shared: object | None = None) -> Admission:
    spawned: list[object] = []
    guard = StoreGuard("rate_limit", timeout=1.0)
    return Admission(limits, shared, guard, lambda *a: spawned.append(a))  # type: ignore[arg-type]


ALICE = RequestInfo(client_address="10.0.0.1")
BOB = RequestInfo(client_address="10.0.0.2")


async def test_a_client_key_has_its_own_window(autojump_clock: trio.testing.MockClock) -> None:
    adm = admission(SessionLimits(rate_limit_per_client=RateLimit(2, 10.0)))
    await adm.admit(ALICE)
    await adm.admit(ALICE)
    with pytest.raises(RateLimited) as refused:
        await adm.admit(ALICE)
    assert refused.value.retry_after == 10.0
    await adm.admit(BOB)  # another key, another window
    assert adm.rate_limited == 1
    await trio.sleep(10.0)
    await adm.admit(ALICE)  # the window slid on


async def test_a_held_receipt_is_refunded_only_on_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adm = admission(SessionLimits(rate_limit=RateLimit(1, 60.0)))
    adm.hold("first", await adm.admit(ALICE))
    adm.refund_held("first")  # its creation failed: the budget is whole again
    adm.hold("second", await adm.admit(BOB))
    adm.settle("second")  # it succeeded: spent for good
    adm.refund_held("second")  # nothing held any more: no double refund
    with pytest.raises(RateLimited):
        await adm.admit(ALICE)


async def test_no_limits_admit_everyone() -> None:
    adm = admission(SessionLimits())
    for _ in range(100):
        await adm.admit(ALICE)
    assert adm.rate_limited == 0


class DownLimiter:
    """A shared limiter whose backend is unreachable."""

    global_limit = RateLimit(1, 60.0)
    per_client = None
    calls = 0

    async def acquire(self, key: str | None) -> tuple[float, object]:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        raise StoreUnavailable("backend down")

    async def refund(self, receipt: object) -> None:
        raise AssertionError("nothing was spent on the shared limiter")


async def test_a_down_shared_limiter_falls_back_to_its_limits_locally(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = DownLimiter()
    adm = admission(SessionLimits(), shared)
    receipt = await adm.admit(ALICE)
    assert receipt.shared is None
    assert receipt.local
    with pytest.raises(RateLimited):
        await adm.admit(BOB)  # the shared limit, applied by this instance
    adm.refund(receipt)
    await adm.admit(BOB)


async def test_take_slot_evicts_and_waits_for_the_victim_to_leave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t: SessionTable[Stub] = SessionTable(1)
    old = Stub("old")
    t.take_nowait("old")
    t.add("old", old)
    with pytest.raises(TooManySessions):
        await t.take_slot("new", EvictionPolicy.REJECT, 5.0)
    t.mark("old", busy=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.take_slot, "new", LRA, 5.0)
        await trio.sleep(1.0)
        assert not old.is_open  # closed, still holding its slot
        assert t.limiter.borrowed_tokens == 1
        t.remove("old", old)  # its worker finished: the waiter gets the token
    assert t.limiter.statistics().borrowers == ["new"]
    with pytest.raises(TooManySessions):  # nobody idle to evict
        await t.take_slot("third", LRA, 5.0)
    assert t.refused == 2


async def test_take_slot_gives_up_when_the_victim_does_not_leave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t: SessionTable[Stub] = SessionTable(1)
    t.take_nowait("old")
    t.add("old", Stub("old"))
    with pytest.raises(TooManySessions, match="timed out"):
        await t.take_slot("new", EvictionPolicy.OLDEST, 5.0)
    assert trio.current_time() == 5.0
    assert t.refused == 1
