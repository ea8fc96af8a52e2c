"""Where a server's CPU goes under one benchmark workload (py-spy, sampling the serving PID).

Starts a benchmark server (``ours`` by default), drives it with
bench/loadgen.py, records it with ``py-spy record --format raw`` and prints:
samples by package (self time), the hottest functions (self time), and our
functions by inclusive time.

    pip install py-spy   # anywhere; pass its path with --py-spy
    .venv/bin/python bench/profile_cpu.py --workload calls --reply-mode json --seconds 10
    .venv/bin/python bench/profile_cpu.py --workload churn --concurrency 1

Workloads: ``calls`` (tools/call on open sessions, closed loop), ``churn``
(whole sessions), ``flood`` (initialize at 500/s from one address against
``--rate-limit-per-client 10/60``), ``stateless-json`` / ``stateless-sse``
(2026-07-28 tools/call with no session, answered as JSON / as SSE; run the
server with ``--reply-mode sse`` for the SSE variant).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import run as runner  # noqa: E402

PACKAGES = (
    ("trio_mcp_sessions/", "trio_mcp_sessions (ours)"),
    ("hypercorn/", "hypercorn"),
    ("h11/", "h11"),
    ("trio/", "trio"),
    ("json/", "json"),
    ("mcp/", "mcp SDK"),
    ("starlette/", "starlette"),
    ("anyio/", "anyio"),
    ("pydantic", "pydantic"),
)


def package(frame: str) -> str:
    for marker, name in PACKAGES:
        if marker in frame:
            return name
    if frame.startswith("<") or "(<" in frame:
        return "generated (attrs/dataclass)"
    return "stdlib / other"


def analyse(path: Path, top: int, ms_per_op: float | None = None) -> str:
    self_by_func: collections.Counter[str] = collections.Counter()
    self_by_pkg: collections.Counter[str] = collections.Counter()
    incl_ours: collections.Counter[str] = collections.Counter()
    total = 0
    idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf = frames[-1]
        if "epoll" in leaf or "get_events" in leaf or "process_events" in leaf:
            idle += n
        self_by_func[_short(_func_line_free(leaf))] += n
        self_by_pkg[package(leaf)] += n
        seen = set()
        for frame in frames:
            if "trio_mcp_sessions/" in frame and frame not in seen:
                seen.add(frame)
                incl_ours[_func(frame)] += n
    out = [f"{total} samples ({100 * idle / max(1, total):.1f}% waiting in epoll)\n"]
    unit = "" if ms_per_op is None else f" (of {ms_per_op:.3f} ms server CPU per operation)"
    out.append(f"| package (self time) | % of samples | ms per operation{unit} |")
    out.append("|---|---:|---:|")
    for name, n in self_by_pkg.most_common():
        share = n / total
        ms = "" if ms_per_op is None else f"{share * ms_per_op:.3f}"
        out.append(f"| {name} | {100 * share:.1f} | {ms} |")
    out.append("\n| hottest functions (self time) | % |\n|---|---:|")
    for func, n in self_by_func.most_common(top):
        out.append(f"| `{func}` | {100 * n / total:.1f} |")
    out.append("\n| our functions (inclusive time) | % |\n|---|---:|")
    for func, n in incl_ours.most_common(top):
        out.append(f"| `{func}` | {100 * n / total:.1f} |")
    return "\n".join(out)


def _func(frame: str) -> str:
    """``name (path/to/file.py:123)`` → ``name (file.py)``: one row per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"


def _func_line_free(frame: str) -> str:
    """Drop the line number: one row per function."""
    head, sep, where = frame.partition(" (")
    return f"{head} ({where.rsplit(':', 1)[0]})" if sep else frame


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})".replace("))", ")")


async def workload(
    args: argparse.Namespace, server: runner.Server, recording: trio.Event
) -> dict[str, float]:
    """Run the load until the recording ends; count operations and CPU during the recording."""
    target = server.target
    stateless = args.workload.startswith("stateless-")
    sessions = [] if stateless else await loadgen.open_sessions(target, args.concurrency)
    stats: dict[str, float] = {}
    start: dict[str, float] = {}

    async def counting() -> None:
        await trio.sleep(1)  # warm-up
        start["cpu"], start["ops"] = server.cpu(), _ops()
        recording.set()

    done = {"ops": 0}

    def _ops() -> int:
        return done["ops"]

    async def load() -> None:
        while True:
            if args.workload == "calls":
                r = await loadgen.tool_calls(
                    target, sessions, concurrency=args.concurrency, count=10**7, seconds=0.5
                )
                done["ops"] += r["requests"]
            elif args.workload.startswith("stateless-"):
                r = await loadgen.stateless_calls(
                    target,
                    concurrency=args.concurrency,
                    count=10**7,
                    seconds=0.5,
                    reply=args.workload.removeprefix("stateless-"),
                )
                done["ops"] += r["requests"]
            elif args.workload == "churn":
                r = await loadgen.churn(
                    target, concurrency=args.concurrency, count=10**7, seconds=0.5
                )
                done["ops"] += r["sessions"]
            else:
                r = await loadgen.flood(target, rate=500, seconds=0.5)
                done["ops"] += r["sent"]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(load)
        await counting()
        await trio.to_thread.run_sync(record, args, server.pid)
        stats["cpu_s"] = server.cpu() - start["cpu"]
        stats["ops"] = _ops() - start["ops"]
        nursery.cancel_scope.cancel()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=runner.SERVER_NAMES, default="ours")
    parser.add_argument(
        "--workload",
        choices=("calls", "churn", "flood", "stateless-json", "stateless-sse"),
        default="calls",
    )
    parser.add_argument("--reply-mode", choices=("json", "sse"), default="json")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--out", default="/tmp/trio-mcp-profile.txt", help="raw py-spy output")
    args = parser.parse_args()
    run = runner.Run(runner.parse_args(["--quick"]))
    ours_args = ["--rate-limit-per-client", "10/60"] if args.workload == "flood" else []
    with runner.running_server(
        run, args.server, "profile", reply_mode=args.reply_mode, ours_args=ours_args
    ) as server:
        stats = trio.run(workload, args, server, trio.Event())
    ms_per_op = stats["cpu_s"] * 1000 / stats["ops"] if stats["ops"] else None
    print(f"# {stats['ops']:.0f} operations, {stats['cpu_s']:.2f} s server CPU while recording")
    print(analyse(Path(args.out), args.top, ms_per_op))


def record(args: argparse.Namespace, pid: int) -> None:
    command = [
        args.py_spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(args.rate),
        "--duration",
        str(int(args.seconds)),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        args.out,
    ]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    print(f"# py-spy recorded {time.monotonic() - started:.1f} s of pid {pid}", flush=True)


if __name__ == "__main__":
    main()
