"""A burst of slow 2026-07-28 calls at once: what a server admits, refuses and drops.

The measurement behind issue 12: N concurrent sessionless ``tools/call`` of a
tool that waits (2 s by default), each on its own connection, against ours
with ``--max-inflight`` and against the official SDK's modern path (no
in-flight cap), each in its own process on Hypercorn's trio worker. Printed
per server: the answers by HTTP status, connection errors, how soon answers
and refusals came, and the server's RSS before and at its peak (ours also
with a cap above the burst: what it did before it had one)::

    .venv/bin/python bench/burst.py --calls 500 --max-inflight 20

Everything runs on 127.0.0.1; the servers are stopped by their PIDs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench_run

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def burst(server: bench_run.Server, calls: int, wait_ms: float) -> dict[str, Any]:
    url = server.url
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "pause",
    }
    statuses: Counter[str] = Counter()
    refused_after: list[float] = []
    answered_after: list[float] = []
    rss = [server.rss_kib()]
    limits = httpx.Limits(max_connections=calls, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def call(index: int) -> None:
            body = {
                "jsonrpc": "2.0",
                "id": index,
                "method": "tools/call",
                "params": {"name": "pause", "arguments": {"ms": wait_ms}, "_meta": META},
            }
            start = trio.current_time()
            try:
                response = await http.post(url, content=json.dumps(body), headers=headers)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                return
            elapsed = trio.current_time() - start
            statuses[str(response.status_code)] += 1
            if response.status_code == 200:
                answered_after.append(elapsed)
            else:
                refused_after.append(elapsed)

        async def sample_rss(done: trio.Event) -> None:
            while not done.is_set():
                rss.append(server.rss_kib())
                await trio.sleep(0.1)

        began = time.monotonic()
        done = trio.Event()
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample_rss, done)
                async with trio.open_nursery() as burst_nursery:
                    for index in range(calls):
                        burst_nursery.start_soon(call, index)
                done.set()
        wall = time.monotonic() - began

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {
            "median_s": round(statistics.median(ordered), 3),
            "max_s": round(ordered[-1], 3),
        }

    return {
        "statuses": dict(statuses),
        "answered_after": spread(answered_after),
        "refused_after": spread(refused_after),
        "wall_s": round(wall, 2),
        "rss_mib": {"start": round(rss[0] / 1024, 1), "peak": round(max(rss) / 1024, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--wait-ms", type=float, default=2000.0)
    parser.add_argument("--max-inflight", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 2000:
        raise SystemExit("--calls must be 1..2000 (each call is a connection)")
    log_dir = bench_run.RESULTS / "logs" / f"burst-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    launch = bench_run.Launch(log_dir)
    results: dict[str, Any] = {
        "machine": bench_run.machine(),
        "calls": args.calls,
        "wait_ms": args.wait_ms,
        "max_inflight": args.max_inflight,
    }
    for name, label, ours_args in (
        ("ours", "ours", ["--max-inflight", str(args.max_inflight)]),
        ("ours", "ours-uncapped", ["--max-inflight", str(args.calls * 2)]),
        ("sdk", "sdk", []),
    ):
        with bench_run.running_server(
            launch, name, f"burst-{label}", reply_mode="json", ours_args=ours_args
        ) as server:
            results[label] = trio.run(burst, server, args.calls, args.wait_ms)
        print(f"{label}: {results[label]}", flush=True)
    print()
    print(
        "| server | 200 | 503/429 | connection errors | answers after (median / max s) "
        "| refusals after (median / max s) | RSS start → peak (MiB) |"
    )
    print("|---|---:|---:|---:|---|---|---|")
    for label, title in (
        ("ours", f"trio-mcp-sessions, --max-inflight {args.max_inflight}"),
        ("ours-uncapped", "trio-mcp-sessions, cap above the burst"),
        ("sdk", "mcp SDK 2.3.0 modern path"),
    ):
        r = results[label]
        s = r["statuses"]
        errors = sum(v for k, v in s.items() if not k.isdigit())
        refused = s.get("503", 0) + s.get("429", 0)
        answered, refusals = (
            f"{t['median_s']} / {t['max_s']}" if t else "-"
            for t in (r["answered_after"], r["refused_after"])
        )
        print(
            f"| {title} | {s.get('200', 0)} | {refused} | {errors} | {answered} | {refusals} "
            f"| {r['rss_mib']['start']} → {r['rss_mib']['peak']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
