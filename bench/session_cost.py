"""Cost of one session create+close as the number of live sessions grows.

No HTTP: this measures the session manager itself (admission, the limiter,
the idle LRU, eviction-candidate choice, the rate-limit check, the worker
task), so the numbers show whether any of it scans the live sessions.

    python bench/session_cost.py --sizes 100 1000 10000 100000 --cycles 3000

For each size N it opens N idle sessions, then times CYCLES rounds of
(create + initialize + close) with N sessions live, CYCLES whole sessions as
bench/run.py churns them (the same plus a ``tools/call`` read from its
stream), and CYCLES rounds of
create + initialize at the cap (each one evicts the least recently active
session). Times are this process's CPU time (``time.process_time``), so a
busy machine slows the run but moves the figures less. Bounded: every loop
has a fixed count and the whole run a deadline.

It also counts, with a :class:`trio.abc.Instrument`, the scheduling rounds
(scheduler loop iterations) and task steps one whole churned session takes:
those counts do not depend on the machine's noise, so a change that adds a
schedule point or a task shows up exactly.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
from typing import Any

import trio

from trio_mcp_sessions import (
    BoundedSessionManager,
    CloseReason,
    McpServer,
    RateLimit,
    RequestInfo,
    SessionLimits,
)
from trio_mcp_sessions._protocol._jsonrpc import Notification, Request
from trio_mcp_sessions._protocol._lifecycle import parse_initialize

INIT = Request(
    1,
    "initialize",
    {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench"}},
)
CLIENT = parse_initialize(INIT)
INITIALIZED = [Notification("notifications/initialized")]


async def open_one(manager: BoundedSessionManager, info: RequestInfo) -> str:
    session_id = await manager.create_session(info)
    await manager.initialize_session(session_id, INIT, CLIENT, info)
    await manager.accept_messages(session_id, INITIALIZED, info)
    return session_id


async def churn_with_a_call(
    manager: BoundedSessionManager, info: RequestInfo, call: list[Request], cycles: int
) -> None:
    """*cycles* whole sessions: open, one ``tools/call`` read from its stream, close."""
    for _ in range(cycles):
        session_id = await open_one(manager, info)
        stream = await manager.create_stream(session_id, call, info, "sse")
        try:
            async for _event in stream:
                pass
        finally:
            stream.detach()
        await manager.close_session(session_id, CloseReason.DELETED)


class StepCounter(trio.abc.Instrument):
    """Scheduling rounds and task steps while it is installed."""

    def __init__(self) -> None:
        self.rounds = 0
        self.steps = 0

    def after_io_wait(self, timeout: float) -> None:
        self.rounds += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def measure(size: int, cycles: int, rounds: int) -> dict[str, Any]:
    server = McpServer("bench")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back.

        Args:
            text: The text.
        """
        return text

    limits = SessionLimits(
        max_sessions=size + 1,
        idle_timeout=3600,
        init_timeout=3600,
        # A rate limit that never refuses, so its cost is in the numbers.
        rate_limit=RateLimit(10**9, 60),
        rate_limit_per_client=RateLimit(10**9, 60),
    )
    result: dict[str, Any] = {"live_sessions": size}
    async with BoundedSessionManager(server, limits=limits, event_store=None) as manager:
        gc.collect()
        before = rss_kib()
        for n in range(size):
            await open_one(manager, RequestInfo(client_address=f"10.{n % 250}.0.1"))
        gc.collect()
        result["rss_kib_per_idle_session"] = round((rss_kib() - before) / size, 2)
        info = RequestInfo(client_address="192.0.2.1")

        churn: list[float] = []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(cycles):
                session_id = await open_one(manager, info)
                await manager.close_session(session_id, CloseReason.DELETED)
            churn.append((time.process_time() - start) / cycles * 1e6)
        result["create_close_us"] = round(statistics.median(churn), 1)

        # The whole churned session of bench/run.py, minus HTTP: with a
        # tools/call answered on an SSE stream (no event store here).
        call = [Request(2, "tools/call", {"name": "echo", "arguments": {"text": "hi"}})]
        full: list[float] = []
        for _ in range(rounds):
            start = time.process_time()
            await churn_with_a_call(manager, info, call, cycles)
            full.append((time.process_time() - start) / cycles * 1e6)
        result["session_with_call_us"] = round(statistics.median(full), 1)
        counter = StepCounter()
        trio.lowlevel.add_instrument(counter)
        try:
            await churn_with_a_call(manager, info, call, cycles)
        finally:
            trio.lowlevel.remove_instrument(counter)
        result["rounds_per_session"] = round(counter.rounds / cycles, 2)
        result["task_steps_per_session"] = round(counter.steps / cycles, 2)

        await open_one(manager, info)  # now at the cap: every creation evicts
        evict: list[float] = []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(cycles):
                await open_one(manager, info)
            evict.append((time.process_time() - start) / cycles * 1e6)
        result["create_with_eviction_us"] = round(statistics.median(evict), 1)
        stats = manager.statistics()
        assert stats.live_sessions == size + 1
        assert stats.evicted == rounds * cycles
    return result


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with trio.fail_after(args.deadline):
        for size in args.sizes:
            result = await measure(size, args.cycles, args.rounds)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]
    lines = [
        "| live sessions | create+close (µs) | ratio to smallest | create with eviction (µs) "
        "| ratio to smallest | session with a tools/call (µs) | scheduling rounds / task steps "
        "per session | RSS per idle session (KiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['live_sessions']:,} | {r['create_close_us']} "
            f"| {r['create_close_us'] / base['create_close_us']:.2f} "
            f"| {r['create_with_eviction_us']} "
            f"| {r['create_with_eviction_us'] / base['create_with_eviction_us']:.2f} "
            f"| {r['session_with_call_us']} "
            f"| {r['rounds_per_session']} / {r['task_steps_per_session']} "
            f"| {r['rss_kib_per_idle_session']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=900, help="seconds for the whole run")
    args = parser.parse_args()
    print(f"# Python {sys.version.split()[0]}, trio {trio.__version__}, {platform.machine()}")
    print(table(trio.run(main, args)))
