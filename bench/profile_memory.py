"""Where our server's memory per idle session goes (tracemalloc, over real HTTP).

Starts trio-mcp-sessions (the benchmark server, bench/servers/ours.py) in a
child process with ``tracemalloc`` on, opens N idle sessions over HTTP with
bench/loadgen.py, then gives each one a standalone GET stream, snapshotting
the server's Python allocations (SIGUSR1) before, after the sessions and
after the streams, and prints the allocation sites that grew, in bytes per
session. Python allocations only: RSS also holds allocator slack and the
kernel's socket buffers are not in RSS at all.

    .venv/bin/python bench/profile_memory.py --sessions 2000 [--reply-mode sse] [--frames 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


def serve_traced(args: argparse.Namespace) -> None:
    tracemalloc.start(args.frames)
    sys.path.insert(0, str(BENCH / "servers"))
    from ours import server  # type: ignore[import-not-found]

    from trio_mcp_sessions import SessionLimits, serve

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: serve(
                    server,
                    bind="127.0.0.1:0",
                    reply_mode=args.reply_mode,
                    limits=SessionLimits(max_sessions=10**6, idle_timeout=3600, init_timeout=3600),
                    graceful_timeout=1,
                    task_status=task_status,
                )
            )
            print(f"READY {urls[0]}/mcp", flush=True)
            with trio.open_signal_receiver(signal.SIGUSR1) as signals:
                count = 0
                async for _ in signals:
                    count += 1
                    path = Path(args.snapshot_dir) / f"{count}.snap"
                    tracemalloc.take_snapshot().dump(str(path))
                    print(f"SNAPSHOT {path}", flush=True)

    trio.run(main)


def drive(args: argparse.Namespace) -> None:
    import loadgen

    snap_dir = Path(f"/tmp/trio-mcp-memprof-{os.getpid()}")
    snap_dir.mkdir(exist_ok=True)
    log = snap_dir / "server.log"
    command = [
        sys.executable,
        __file__,
        "--serve",
        "--snapshot-dir",
        str(snap_dir),
        "--frames",
        str(args.frames),
        "--reply-mode",
        args.reply_mode,
    ]
    with open(log, "wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = _wait_for(log, "READY ", 30).split()[1]
        target = loadgen.Target.from_url(url)
        taken = 0

        def snapshot() -> tracemalloc.Snapshot:
            nonlocal taken
            taken += 1
            os.kill(child.pid, signal.SIGUSR1)
            _wait_for(log, f"SNAPSHOT {snap_dir}/{taken}.snap", 120)
            snap = tracemalloc.Snapshot.load(str(snap_dir / f"{taken}.snap"))
            return snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])

        async def main() -> None:
            warm = await loadgen.open_sessions(target, 20, concurrency=4)
            held = await loadgen.hold_get_streams(target, warm[:10], concurrency=4)
            for conn in held:
                await conn.aclose()
            await loadgen.close_sessions(target, warm)
            await trio.sleep(0.5)
            base = await trio.to_thread.run_sync(snapshot)
            sessions = await loadgen.open_sessions(target, args.sessions, concurrency=16)
            await trio.sleep(0.5)
            idle = await trio.to_thread.run_sync(snapshot)
            held = await loadgen.hold_get_streams(target, sessions, concurrency=16)
            await trio.sleep(0.5)
            with_get = await trio.to_thread.run_sync(snapshot)
            n = len(sessions)
            report("idle session (initialize + initialized)", idle.compare_to(base, "traceback"), n)
            report("standalone GET stream held open", with_get.compare_to(idle, "traceback"), n)
            for conn in held:
                await conn.aclose()

        trio.run(main)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()


def report(title: str, stats: list[tracemalloc.StatisticDiff], n: int) -> None:
    total = sum(s.size_diff for s in stats)
    print(f"\n## {title}: {total / n:,.0f} bytes per session in Python allocations ({n} sessions)")
    by_site: dict[str, list[float]] = {}
    by_ours: dict[str, list[float]] = {}
    for stat in stats:
        frames = list(stat.traceback)[::-1]  # innermost first
        site = f"{_short(frames[0].filename)}:{frames[0].lineno}"
        ours = next(
            (
                f"{_short(f.filename)}:{f.lineno}"
                for f in frames
                if "trio_mcp_sessions" in f.filename
            ),
            "(no trio_mcp_sessions frame: Hypercorn, h11 or trio on their own)",
        )
        for table, key in ((by_site, site), (by_ours, ours)):
            entry = table.setdefault(key, [0.0, 0.0])
            entry[0] += stat.size_diff / n
            entry[1] += stat.count_diff / n
    for heading, table in (
        ("allocation site (innermost frame)", by_site),
        ("innermost trio_mcp_sessions frame on the allocation's stack", by_ours),
    ):
        print(f"\n| bytes/session | objects/session | {heading} |")
        print("|---:|---:|---|")
        rows = sorted(table.items(), key=lambda kv: -kv[1][0])
        for key, (size, count) in rows[:25]:
            if size < args_min_bytes:
                break
            print(f"| {size:,.0f} | {count:.2f} | {key} |")


args_min_bytes = 16.0


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _wait_for(log: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(text):
                return line
        time.sleep(0.05)
    raise RuntimeError(f"{text!r} not seen in {log} within {seconds} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--reply-mode", choices=("sse", "json"), default="sse")
    parser.add_argument("--frames", type=int, default=25, help="traceback depth recorded")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-dir", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve:
        serve_traced(parsed)
    else:
        drive(parsed)
