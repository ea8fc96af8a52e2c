"""Model-based property test of the memory handle store (hypothesis, trio's MockClock).

Random sequences of creates (one at a time, or a burst of concurrent ones),
gets, updates, deletes by the owner or by another principal, sweeps and clock
jumps run against a real :class:`HandleStore` and a plain-Python model of what
it should hold. After every step: never more than the global cap, never more
than the per-principal cap, every count equal to the model's (live handles,
created, evicted, expired, deleted, refused, not found), every victim the one
the policy names, and every value the last one written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _peers import FakePeer
from trio_mcp_sessions import (
    Context,
    HandleLimitReached,
    HandleLimits,
    HandleNotFound,
    HandlePolicy,
    HandleStore,
    InMemoryHandleBackend,
)

MAX_HANDLES, PER_PRINCIPAL = 5, 2
IDLE, LIFETIME = 20, 45
PRINCIPALS = ("alice", "bob", "carol", None)


@dataclass
class Entry:
    principal: str | None
    created: float
    used: float
    value: Any
    #: The order of use (trio's clock stands still within a step, so times tie).
    seq: int = 0


def context(principal: str | None) -> Context:
    return Context(FakePeer(), 1, None, principal=principal)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(PRINCIPALS), st.integers(0, 99)),
        st.tuples(st.just("create"), st.sampled_from(PRINCIPALS), st.integers(0, 99)),
        st.tuples(
            st.just("burst"),
            st.lists(st.sampled_from(PRINCIPALS), min_size=2, max_size=8),
            st.none(),
        ),
        st.tuples(st.just("get"), st.integers(0, 30), st.sampled_from(PRINCIPALS)),
        st.tuples(st.just("get_own"), st.integers(0, 30), st.none()),
        st.tuples(st.just("update_own"), st.integers(0, 30), st.integers(0, 99)),
        st.tuples(st.just("delete"), st.integers(0, 30), st.sampled_from(PRINCIPALS)),
        st.tuples(st.just("sweep"), st.none(), st.none()),
        st.tuples(st.just("sleep"), st.sampled_from([1, 5, 10, 19, 20, 25]), st.none()),
    ),
    min_size=5,
    max_size=50,
)


def run_model(policy: HandlePolicy, ops: list[tuple[str, Any, Any]]) -> None:
    limits = HandleLimits(
        max_handles=MAX_HANDLES,
        max_per_principal=PER_PRINCIPAL,
        idle_timeout=IDLE,
        max_lifetime=LIFETIME,
        policy=policy,
    )
    backend = InMemoryHandleBackend()
    store = HandleStore("cart", create_tool="create_cart", limits=limits, backend=backend)
    model: dict[str, Entry] = {}
    minted: list[str] = []  # every handle ever returned, live or not
    uses = iter(range(1, 1 << 30))
    counts = dict.fromkeys(("created", "evicted", "expired", "deleted", "refused", "not_found"), 0)

    def purge(now: float) -> None:
        for handle, entry in list(model.items()):
            if now - entry.used >= IDLE or now - entry.created >= LIFETIME:
                del model[handle]
                counts["expired"] += 1

    def victim(principal: str | None) -> str:
        pool = [h for h, e in model.items() if principal is None or e.principal == principal]
        if policy is HandlePolicy.LEAST_RECENTLY_USED:
            return min(pool, key=lambda h: model[h].seq)
        return min(pool, key=lambda h: model[h].created)

    def owned(principal: str) -> int:
        return sum(1 for e in model.values() if e.principal == principal)

    def expect_create(principal: str | None, handle: str | None, value: Any, now: float) -> None:
        """Apply one create to the model; *handle* None: the store refused it."""
        purge(now)
        full = len(model) >= MAX_HANDLES or (
            principal is not None and owned(principal) >= PER_PRINCIPAL
        )
        if policy is HandlePolicy.REJECT and full:
            assert handle is None
            counts["refused"] += 1
            return
        assert handle is not None
        if principal is not None:
            while owned(principal) >= PER_PRINCIPAL:
                del model[victim(principal)]
                counts["evicted"] += 1
        while len(model) >= MAX_HANDLES:
            del model[victim(None)]
            counts["evicted"] += 1
        model[handle] = Entry(principal, now, now, value, next(uses))
        minted.append(handle)
        counts["created"] += 1

    def check() -> None:
        backend.table.check()
        assert len(backend.table) <= MAX_HANDLES
        for principal in PRINCIPALS:
            if principal is not None:
                assert backend.table.count(principal) <= PER_PRINCIPAL
                assert backend.table.count(principal) == owned(principal)
        stats = store.statistics()
        assert stats.handles == len(backend.table) == len(model)
        for name, value in counts.items():
            assert getattr(stats, name) == value, name

    async def create(principal: str | None, value: Any) -> str | None:
        try:
            return await store.create(context(principal), value)
        except HandleLimitReached:
            return None

    async def lookup(handle: str, principal: str | None) -> Any:
        now = trio.current_time()
        purge(now)
        entry = model.get(handle)
        try:
            got = await store.get(context(principal), handle)
        except HandleNotFound:
            assert entry is None or entry.principal != principal
            counts["not_found"] += 1
            return
        assert entry is not None
        assert entry.principal == principal
        assert got == entry.value
        entry.used, entry.seq = now, next(uses)

    async def main() -> None:
        for op, arg, extra in ops:
            now = trio.current_time()
            if op == "create":
                expect_create(arg, await create(arg, {"n": extra}), {"n": extra}, now)
            elif op == "burst":
                done: list[tuple[str | None, str | None, Any]] = []

                async def one(principal: str | None, n: int, done: list[Any]) -> None:
                    handle = await create(principal, {"n": n})
                    done.append((principal, handle, {"n": n}))  # no checkpoint since the create

                async with trio.open_nursery() as nursery:
                    for n, principal in enumerate(arg):
                        nursery.start_soon(one, principal, n, done)
                assert trio.current_time() == now
                for principal, handle, value in done:
                    expect_create(principal, handle, value, now)
            elif op in ("get", "get_own"):
                if minted:
                    handle = minted[arg % len(minted)]
                    entry = model.get(handle)
                    principal = extra if op == "get" else (entry.principal if entry else None)
                    await lookup(handle, principal)
            elif op == "update_own" and minted:
                handle = minted[arg % len(minted)]
                purge(now)
                entry = model.get(handle)
                principal = entry.principal if entry is not None else "nobody"
                try:
                    await store.update(context(principal), handle, {"u": extra})
                except HandleNotFound:
                    assert entry is None
                    counts["not_found"] += 1
                else:
                    assert entry is not None
                    entry.value, entry.used, entry.seq = {"u": extra}, now, next(uses)
            elif op == "delete" and minted:
                handle = minted[arg % len(minted)]
                purge(now)
                entry = model.get(handle)
                try:
                    await store.delete(context(extra), handle)
                except HandleNotFound:
                    assert entry is None or entry.principal != extra
                    counts["not_found"] += 1
                else:
                    assert entry is not None
                    assert entry.principal == extra
                    del model[handle]
                    counts["deleted"] += 1
            elif op == "sweep":
                await store.purge_expired()
                purge(now)
            elif op == "sleep":
                await trio.sleep(arg)
            check()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("policy", list(HandlePolicy))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_handle_store_matches_model(policy: HandlePolicy, ops: list[tuple[str, Any, Any]]) -> None:
    run_model(policy, ops)
