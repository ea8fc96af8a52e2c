"""The benchmark runner: starts each server, measures it with bench/loadgen.py, stops it, reports.

For every scenario and every server it starts the server process (the PID it
measures is the serving process: each server runs Hypercorn's trio worker
in-process), waits for its URL, warms it up, measures (server CPU from
``/proc/<pid>/stat`` utime+stime, server RSS from ``/proc/<pid>/status``
VmRSS, client CPU from this process), stops it by PID (SIGTERM, SIGKILL after
a timeout), and finally writes ``bench/results/<timestamp>.json`` and
``.md`` and prints markdown tables with the ratios.

Servers: ``raw`` (bench/servers/raw_asgi.py, the Hypercorn ceiling), ``ours``
(trio-mcp-sessions via ``python -m trio_mcp_sessions serve``) and ``sdk``
(the official ``mcp`` SDK, bench/servers/sdk_server.py), all on Hypercorn's
trio worker, on 127.0.0.1, access log off. The modern flood serves ours through
bench/servers/keyed.py instead (the same server and flags, its budgets keyed
on an ``X-Bench-Client`` header, since every client is on 127.0.0.1).

    .venv/bin/python bench/run.py                 # everything, about 10 minutes
    .venv/bin/python bench/run.py --quick         # smaller and shorter, under 2 minutes
    .venv/bin/python bench/run.py --scenarios scale --scale-sizes 100 10000 100000
    .venv/bin/python bench/run.py --scenarios modern-flood   # about 1.5 minutes

Scenarios: churn, throughput, memory, scale, flood, stateless, modern-flood (see
docs/benchmarks.md).
Everything is bounded: each measurement in requests and seconds, each server
start and stop in seconds, the SDK's session opening in the scale scenario in
seconds, and the whole run by ``--budget`` (remaining steps are skipped and
reported once it is spent).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
from loadgen import Target  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

RESULTS = BENCH / "results"
DASH = "\u2013"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SERVER_NAMES = ("raw", "ours", "sdk")
LABELS = {
    "raw": "raw ASGI (ceiling)",
    "ours": "trio-mcp-sessions",
    "sdk": "mcp SDK 2.3.0",
    "ours:no-event-store": "trio-mcp-sessions, `--no-event-store`",
}
FLOOD_SOURCE = "127.0.0.2"
# Well-behaved clients each have their own loopback address (the per-client
# rate limit is keyed on the peer address).
GOOD_SOURCES = [f"127.0.0.{10 + i}" for i in range(8)]


# -- server processes ------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Server:
    name: str
    pid: int
    url: str
    log: Path
    process: subprocess.Popen[bytes]
    reply_mode: str = "sse"
    #: The configuration's key in interleaved(): the name, or "name:variant".
    key: str = ""

    @property
    def target(self) -> Target:
        return Target.from_url(self.url)

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)


def server_command(
    name: str, reply_mode: str, ours_args: list[str], sdk_max_sessions: str
) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    bind = ["--bind", "127.0.0.1:0"]
    if name == "raw":
        env["RAW_REPLY_MODE"] = reply_mode
        return [sys.executable, str(BENCH / "servers" / "raw_asgi.py"), *bind], env
    if name == "transport":  # bench/layer_cost.py: our transport over a do-nothing manager
        env["TRANSPORT_REPLY_MODE"] = reply_mode
        return [sys.executable, str(BENCH / "servers" / "transport_only.py"), *bind], env
    if name == "keyed":  # the modern flood: ours, budgets keyed on the X-Bench-Client header
        command = [
            sys.executable, str(BENCH / "servers" / "keyed.py"), *bind,
            "--reply-mode", reply_mode, "--log-level", "warning", "--graceful-timeout", "1",
            *ours_args,
        ]  # fmt: skip
        return command, env
    if name == "sdk":
        env["SDK_REPLY_MODE"] = reply_mode
        env["SDK_MAX_SESSIONS"] = sdk_max_sessions
        return [sys.executable, str(BENCH / "servers" / "sdk_server.py"), *bind], env
    # "soak" (bench/soak.py): ours, with the extra tools its hostile mix calls.
    script = "soak_server.py" if name == "soak" else "ours.py"
    command = [
        sys.executable,
        "-m",
        "trio_mcp_sessions",
        "serve",
        f"{BENCH / 'servers' / script}:server",
        *bind,
        "--reply-mode",
        reply_mode,
        "--log-level",
        "warning",
        "--graceful-timeout",
        "1",
        *ours_args,
    ]
    return command, env


_URL = re.compile(rb"http://127\.0\.0\.1:\d+")


@contextlib.contextmanager
def running_server(
    run: Run,
    name: str,
    label: str,
    *,
    reply_mode: str = "sse",
    ours_args: list[str] | None = None,
    sdk_max_sessions: str = "10000",
) -> Iterator[Server]:
    """Start a server, yield it once its URL is printed, stop it by PID."""
    command, env = server_command(name, reply_mode, ours_args or [], sdk_max_sessions)
    log = run.log_dir / f"{label}-{name}-{reply_mode}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    server = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = _URL.search(log.read_bytes())
            if match:
                url = match.group().decode()
                server = Server(name, process.pid, url + "/mcp", log, process, reply_mode, name)
                break
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{name} did not start within 30 s; see {log}")
        extra = " ".join(ours_args or []) if name in ("ours", "keyed") else ""
        print(f"  [{name} ({reply_mode}) pid {process.pid} {server.url} {extra}]", flush=True)
        yield server
    finally:
        stop_seconds, killed = stop(process)
        if server is not None:
            run.stops.append(
                {
                    "server": name,
                    "label": label,
                    "stop_s": round(stop_seconds, 2),
                    "sigkill": killed,
                    "returncode": process.returncode,
                }
            )
        errors = log_errors(log)
        if errors:
            run.log_problems.append({"server": name, "label": label, "log": str(log), **errors})


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> tuple[float, bool]:
    """SIGTERM the PID, SIGKILL it after *timeout*; returns (seconds, whether killed)."""
    start = time.monotonic()
    killed = False
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            killed = True
            process.wait(5)
    return time.monotonic() - start, killed


def log_errors(log: Path) -> dict[str, int]:
    text = log.read_text(errors="replace")
    found = {
        "tracebacks": text.count("Traceback"),
        "error_lines": sum(1 for line in text.splitlines() if "ERROR" in line),
    }
    return {k: v for k, v in found.items() if v}


# -- measuring -------------------------------------------------------------------------


async def measured(server: Server, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run *work*, adding server/client CPU over its wall time and the server's RSS."""
    cpu0, client0, wall0 = server.cpu(), time.process_time(), time.perf_counter()
    result = await work()
    wall = time.perf_counter() - wall0
    server_cpu = server.cpu() - cpu0
    client_cpu = time.process_time() - client0
    result.update(
        wall_s=round(wall, 3),
        server_cpu_s=round(server_cpu, 3),
        client_cpu_s=round(client_cpu, 3),
        server_cpu_pct=round(100 * server_cpu / wall, 1),
        client_cpu_pct=round(100 * client_cpu / wall, 1),
        server_rss_kib=server.rss_kib(),
    )
    return result


def per_op(result: dict[str, Any], count_key: str) -> None:
    """CPU milliseconds per operation (session or request), server and client."""
    n = result.get(count_key) or 0
    if n:
        result["server_cpu_ms_per_op"] = round(result["server_cpu_s"] * 1000 / n, 3)
        result["client_cpu_ms_per_op"] = round(result["client_cpu_s"] * 1000 / n, 3)


@dataclass
class Launch:
    """What :func:`running_server` records into, for a script that has no :class:`Run`."""

    log_dir: Path
    stops: list[dict[str, Any]] = field(default_factory=list)
    log_problems: list[dict[str, Any]] = field(default_factory=list)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.results_dir = Path(getattr(args, "results_dir", None) or RESULTS)
        self.log_dir = self.results_dir / "logs" / self.stamp
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {}
        self.stops: list[dict[str, Any]] = []
        self.log_problems: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.errors: list[dict[str, str]] = []

    def over_budget(self, what: str) -> bool:
        if time.monotonic() - self.started > self.args.budget:
            self.skipped.append(f"{what}: run budget of {self.args.budget:.0f} s spent")
            print(f"  skipped {what}: budget spent", flush=True)
            return True
        return False

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one server's part of a scenario; a failure is recorded, not fatal."""
        if self.over_budget(what):
            return None
        try:
            return fn()
        except Exception as exc:
            print(f"  FAILED {what}: {exc!r}", flush=True)
            self.errors.append({"what": what, "error": repr(exc), "trace": traceback.format_exc()})
            return None


def go(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    gc.collect()
    return trio.run(fn, *args)


# -- interleaved rounds ------------------------------------------------------------------


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number: the median over the rounds; failure and status counts: summed."""
    first = rounds[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [r[key] for r in rounds if key in r]
        if key in ("failures", "statuses"):
            total: dict[str, int] = {}
            for v in values:
                for k, n in v.items():
                    total[k] = total.get(k, 0) + n
            out[key] = total
        elif isinstance(value, dict):
            out[key] = median_of([v for v in values if isinstance(v, dict)])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(statistics.median(values), 3)
        else:
            out[key] = value
    return out


def interleaved(
    run: Run,
    label: str,
    configs: list[tuple[str, str]] | list[tuple[str, str, str]],
    prepare: Callable[[Server], Awaitable[Any]],
    measure: Callable[[Server, Any, Any], Awaitable[dict[str, Any] | None]],
    variants: list[Any],
    describe: Callable[[str, str, Any, dict[str, Any]], str],
    ours_args: list[str] | None = None,
) -> dict[tuple[str, str, Any], dict[str, Any]]:
    """Start every (server, reply mode) at once; measure them in turn, round after round.

    The servers not being measured are idle, and each round visits all of
    them, so drift on a shared machine hits every server alike; the result
    per server is the median over the rounds.
    """
    a = run.args
    results: dict[tuple[str, str, Any], dict[str, Any]] = {}
    if run.over_budget(label):
        return results
    with contextlib.ExitStack() as stack:
        servers: dict[tuple[str, str], Server] = {}
        for config in configs:
            # (server, reply mode) or (server, reply mode, variant): a variant
            # is a reference configuration of ours, e.g. "no-event-store".
            name, mode = config[0], config[1]
            variant = config[2] if len(config) > 2 else None
            extra = [*(ours_args or []), *([f"--{variant}"] if variant else [])]
            key = f"{name}:{variant}" if variant else name
            try:
                # A variant's own label: its own log file (two processes must not share one).
                own_label = f"{label}-{variant}" if variant else label
                servers[(key, mode)] = stack.enter_context(
                    running_server(run, name, own_label, reply_mode=mode, ours_args=extra)
                )
                servers[(key, mode)].key = key
            except Exception as exc:
                run.attempt(f"{label}/{mode}/{name}", lambda exc=exc: _raise(exc))

        async def main() -> None:
            state = {}
            for key, server in servers.items():
                try:
                    state[key] = await prepare(server)
                except Exception as exc:
                    run.attempt(f"{label}/{key[1]}/{key[0]}", lambda exc=exc: _raise(exc))
            rounds: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
            for variant in variants:
                for index in range(a.rounds):
                    if run.over_budget(f"{label} round {index + 1}"):
                        break
                    for key, server in servers.items():
                        if key not in state:
                            continue
                        result = await measure(server, state[key], variant)
                        if result is None:
                            continue  # this variant does not apply to this server
                        rounds.setdefault((*key, variant), []).append(result)
            for key, measured_rounds in rounds.items():
                combined = median_of(measured_rounds)
                combined["rounds"] = measured_rounds
                results[key] = combined
                print(describe(key[0], key[1], key[2], combined), flush=True)

        go(main)
    return results


def _raise(exc: BaseException) -> None:
    raise exc


# -- scenario 1: session churn ---------------------------------------------------------


def scenario_churn(run: Run) -> dict[str, Any]:
    a = run.args
    out: dict[str, Any] = {
        "method": f"initialize + notifications/initialized + tools/call + DELETE per session; "
        f"all servers up at once, measured in turn, {a.rounds} rounds of at most "
        f"{a.churn_count} sessions or {a.churn_seconds} s per server and concurrency level "
        f"(medians over the rounds), after a {a.warmup} s warm-up; default reply modes (SSE)",
    }

    async def prepare(server: Server) -> None:
        await loadgen.churn(server.target, concurrency=8, count=10**6, seconds=a.warmup)

    async def measure(server: Server, _state: None, c: int) -> dict[str, Any]:
        result = await measured(
            server,
            lambda: loadgen.churn(
                server.target, concurrency=c, count=a.churn_count, seconds=a.churn_seconds
            ),
        )
        per_op(result, "sessions")
        return result

    def describe(name: str, _mode: str, c: int, r: dict[str, Any]) -> str:
        return (
            f"  churn {name} c={c}: {r['sessions_per_s']} sessions/s, "
            f"server {r.get('server_cpu_ms_per_op')} ms CPU/session ({r['server_cpu_pct']}%), "
            f"client {r.get('client_cpu_ms_per_op')} ({r['client_cpu_pct']}%), "
            f"failures {r['failures']}"
        )

    configs = [(name, "sse") for name in a.servers]
    measured_ = interleaved(run, "churn", configs, prepare, measure, a.churn_levels, describe)
    for (name, _mode, c), result in measured_.items():
        out.setdefault(name, {})[f"c{c}"] = result
    return out


# -- scenario 2: tool-call throughput ----------------------------------------------------


def scenario_throughput(run: Run) -> dict[str, Any]:
    a = run.args
    out: dict[str, Any] = {
        "method": f"tools/call on {a.concurrency} already-open sessions over {a.concurrency} "
        f"connections, closed loop; all servers up at once, measured in turn, {a.rounds} rounds "
        f"of {a.calls_seconds} s per server (medians over the rounds), after a {a.warmup} s "
        "warm-up",
        "json": {},
        "sse": {},
    }

    async def prepare(server: Server) -> list[Any]:
        sessions = await loadgen.open_sessions(server.target, a.concurrency)
        await loadgen.tool_calls(
            server.target, sessions, concurrency=a.concurrency, count=10**7, seconds=a.warmup
        )
        return sessions

    async def measure(server: Server, sessions: list[Any], _variant: None) -> dict[str, Any]:
        result = await measured(
            server,
            lambda: loadgen.tool_calls(
                server.target,
                sessions,
                concurrency=a.concurrency,
                count=10**7,
                seconds=a.calls_seconds,
            ),
        )
        per_op(result, "requests")
        return result

    def describe(name: str, mode: str, _variant: None, r: dict[str, Any]) -> str:
        lat = r["latency_ms"].get("tools/call", {})
        return (
            f"  throughput {mode} {name}: {r['requests_per_s']} req/s, "
            f"p50 {lat.get('p50')} p99 {lat.get('p99')} ms, server "
            f"{r.get('server_cpu_ms_per_op')} ms CPU/req ({r['server_cpu_pct']}%), "
            f"client {r.get('client_cpu_ms_per_op')} ({r['client_cpu_pct']}%), "
            f"failures {r['failures']}"
        )

    configs: list[tuple[str, str, str]] = [
        (name, mode, "") for mode in ("json", "sse") for name in a.servers
    ]
    if "ours" in a.servers and a.no_store_reference:
        # Reference: SSE without the default in-memory event store (no resumption).
        configs.append(("ours", "sse", "no-event-store"))
    measured_ = interleaved(run, "throughput", configs, prepare, measure, [None], describe)
    for (name, mode, _variant), result in measured_.items():
        out[mode][name] = result
    return out


# -- scenario 3: memory per idle session -------------------------------------------------


def scenario_memory(run: Run) -> dict[str, Any]:
    a = run.args
    n = a.memory_sessions
    out: dict[str, Any] = {
        "method": f"RSS growth over {n} idle sessions (initialize + initialized), then over the "
        f"same {n} sessions each holding one standalone GET SSE stream on its own connection; "
        "after 20 warm-up sessions; default reply modes",
    }
    for name in [s for s in a.servers if s != "raw"]:

        def one(name: str = name) -> dict[str, Any]:
            ours_args = ["--max-sessions", str(4 * n + 100)]
            with running_server(
                run, name, "memory", ours_args=ours_args, sdk_max_sessions=str(4 * n + 100)
            ) as server:

                async def main() -> dict[str, Any]:
                    target = server.target
                    # Warm up the code paths (lazy imports, caches) with a few sessions.
                    warm = await loadgen.open_sessions(target, 20, concurrency=4)
                    held = await loadgen.hold_get_streams(target, warm[:10], concurrency=4)
                    await loadgen.tool_calls(target, warm, concurrency=4, count=40, seconds=5)
                    for conn in held:
                        await conn.aclose()
                    await loadgen.close_sessions(target, warm)
                    await trio.sleep(1)
                    base = server.rss_kib()
                    opened = time.perf_counter()
                    sessions = await loadgen.open_sessions(target, n, concurrency=16, seconds=120)
                    open_s = time.perf_counter() - opened
                    await trio.sleep(1)
                    idle = server.rss_kib()
                    held = await loadgen.hold_get_streams(target, sessions, concurrency=16)
                    await trio.sleep(1)
                    with_get = server.rss_kib()
                    for conn in held:
                        await conn.aclose()
                    return {
                        "sessions": len(sessions),
                        "open_seconds": round(open_s, 2),
                        "rss_base_kib": base,
                        "rss_idle_kib": idle,
                        "rss_with_get_kib": with_get,
                        "kib_per_idle_session": round((idle - base) / len(sessions), 2),
                        "kib_per_session_with_get": round((with_get - base) / len(sessions), 2),
                        "get_streams": len(held),
                    }

                result: dict[str, Any] = go(main)
                print(
                    f"  memory {name}: {result['kib_per_idle_session']} KiB/idle session, "
                    f"{result['kib_per_session_with_get']} KiB with a GET stream",
                    flush=True,
                )
                return result

        result = run.attempt(f"memory/{name}", one)
        if result is not None:
            out[name] = result
    return out


# -- scenario 4: scale -------------------------------------------------------------------


async def _latency_at_size(a: argparse.Namespace, server: Server, sessions: list[Any]) -> dict:
    target = server.target
    calls = await measured(
        server,
        lambda: loadgen.tool_calls(
            target,
            sessions,
            concurrency=1,
            count=10**6,
            seconds=a.scale_seconds,
            pick="random",
        ),
    )
    per_op(calls, "requests")
    cycle = await measured(
        server,
        lambda: loadgen.churn(
            target, concurrency=1, count=10**6, seconds=max(1.0, a.scale_seconds / 2)
        ),
    )
    per_op(cycle, "sessions")
    return {"tools_call": calls, "session_cycle": cycle}


def scenario_scale(run: Run) -> dict[str, Any]:
    a = run.args
    out: dict[str, Any] = {
        "method": f"open sessions (initialize + initialized, 32 at a time) up to each size; at "
        f"each size: tools/call on random live sessions at concurrency 1 for {a.scale_seconds} s, "
        f"then whole session cycles (initialize, initialized, tools/call, DELETE) at "
        f"concurrency 1 for {max(1.0, a.scale_seconds / 2)} s; JSON reply mode; the SDK's "
        f"session opening is bounded to {a.sdk_open_seconds} s in total",
        "sizes": a.scale_sizes,
    }
    for name in a.servers:

        def one(name: str = name) -> dict[str, Any]:
            biggest = max(a.scale_sizes)
            ours_args = [
                "--max-sessions", str(biggest + 1000),
                "--idle-timeout", "7200",
                "--init-timeout", "7200",
            ]  # fmt: skip
            with running_server(
                run, name, "scale", reply_mode="json", ours_args=ours_args, sdk_max_sessions="none"
            ) as server:

                async def main() -> dict[str, Any]:
                    target = server.target
                    await loadgen.churn(target, concurrency=8, count=10**6, seconds=a.warmup)
                    await trio.sleep(0.5)
                    base_rss = server.rss_kib()
                    if name == "raw":
                        # No sessions: the per-request floor of Hypercorn itself.
                        fake = [loadgen.Session("raw", loadgen.PROTOCOL_VERSION)]
                        return {"floor": await _latency_at_size(a, server, fake)}
                    sessions: list[Any] = []
                    levels = []
                    open_budget = a.sdk_open_seconds if name == "sdk" else a.ours_open_seconds
                    open_spent = 0.0
                    for size in a.scale_sizes:
                        need = size - len(sessions)
                        left = open_budget - open_spent
                        if left < 1:
                            break
                        opened = time.perf_counter()
                        cpu0 = server.cpu()
                        new = await loadgen.open_sessions(
                            target, need, concurrency=32, seconds=left
                        )
                        open_cpu = server.cpu() - cpu0
                        took = time.perf_counter() - opened
                        open_spent += took
                        sessions += new
                        await trio.sleep(1)
                        level: dict[str, Any] = {
                            "target_size": size,
                            "live_sessions": len(sessions),
                            "open_seconds": round(took, 2),
                            "open_sessions_per_s": round(len(new) / took, 1),
                            "open_server_cpu_ms_per_session": round(
                                open_cpu * 1000 / max(1, len(new)), 3
                            ),
                            "rss_kib": server.rss_kib(),
                        }
                        if not new:
                            break
                        if len(sessions) < size:
                            level["short"] = (
                                f"{len(sessions):,} of {size:,} sessions opened within its "
                                f"{open_budget:.0f} s opening budget"
                            )
                            print(f"  scale {name} {size}: {level['short']}", flush=True)
                        level["rss_growth_kib_per_session"] = round(
                            (level["rss_kib"] - base_rss) / len(sessions), 2
                        )
                        level.update(await _latency_at_size(a, server, sessions))
                        levels.append(level)
                        tc = level["tools_call"]["latency_ms"].get("tools/call", {})
                        cy = level["session_cycle"]["latency_ms"].get("session", {})
                        print(
                            f"  scale {name} {size}: tools/call p50 {tc.get('p50')} "
                            f"p99 {tc.get('p99')} ms, session p50 {cy.get('p50')} ms, "
                            f"RSS {level['rss_kib'] // 1024} MiB, opened at "
                            f"{level['open_sessions_per_s']}/s",
                            flush=True,
                        )
                        if "short" in level:
                            break
                    return {"base_rss_kib": base_rss, "levels": levels}

                return go(main)

        result = run.attempt(f"scale/{name}", one)
        if result is not None:
            out[name] = result
    return out


# -- scenario 5: flood -------------------------------------------------------------------


def scenario_flood(run: Run) -> dict[str, Any]:
    a = run.args
    good_rate = a.good_rate / len(GOOD_SOURCES)
    out: dict[str, Any] = {
        "method": f"{len(GOOD_SOURCES)} well-behaved clients (own loopback addresses, one open "
        f"session each) call tools/call on a fixed schedule, {a.good_rate:g} calls/s in "
        f"total, latency from the scheduled send time; per round {a.flood_seconds} s without, "
        f"then {a.flood_seconds} s with one client ({FLOOD_SOURCE}) sending initialize at a "
        f"steady {a.flood_rate:g}/s (open loop, up to 128 connections); all servers up at "
        f"once, measured in turn, {a.rounds} rounds, medians over the rounds. Ours: "
        f"--rate-limit-per-client {a.flood_limit}; the SDK has no rate limits; JSON reply mode",
    }

    async def prepare(server: Server) -> list[Any]:
        sessions = []
        for source in GOOD_SOURCES:
            sessions += await loadgen.open_sessions(server.target, 1, source=source)
        await good(server, sessions, a.warmup)()
        return sessions

    def good(
        server: Server, sessions: list[Any], seconds: float
    ) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: loadgen.tool_calls(
            server.target,
            sessions,
            concurrency=len(sessions),
            count=10**7,
            seconds=seconds,
            rate_per_worker=good_rate,
            sources=list(GOOD_SOURCES),
        )

    async def measure(server: Server, sessions: list[Any], _variant: None) -> dict[str, Any]:
        baseline = await measured(server, good(server, sessions, a.flood_seconds))
        flood_result: dict[str, Any] = {}

        async def with_flood() -> dict[str, Any]:
            async with trio.open_nursery() as nursery:

                async def flooder() -> None:
                    flood_result.update(
                        await loadgen.flood(
                            server.target,
                            rate=a.flood_rate,
                            seconds=a.flood_seconds,
                            source=FLOOD_SOURCE,
                        )
                    )

                nursery.start_soon(flooder)
                return await good(server, sessions, a.flood_seconds)()

        flooded = await measured(server, with_flood)
        return {"baseline": baseline, "flood": flooded, "flood_client": flood_result}

    def describe(name: str, _mode: str, _variant: None, r: dict[str, Any]) -> str:
        b = r["baseline"]["latency_ms"].get("tools/call", {})
        f = r["flood"]["latency_ms"].get("tools/call", {})
        return (
            f"  flood {name}: p50 {b.get('p50')} -> {f.get('p50')} ms, p99 {b.get('p99')}"
            f" -> {f.get('p99')} ms; server CPU {r['baseline']['server_cpu_pct']}% "
            f"-> {r['flood']['server_cpu_pct']}%; flood answers "
            f"{r['flood_client'].get('statuses')}; failures {r['flood']['failures']}"
        )

    configs = [(name, "json") for name in a.servers]
    measured_ = interleaved(
        run,
        "flood",
        configs,
        prepare,
        measure,
        [None],
        describe,
        ours_args=["--rate-limit-per-client", a.flood_limit],
    )
    for (name, _mode, _variant), result in measured_.items():
        out[name] = result
    return out


# -- scenario 6: stateless (2026-07-28) tools/call ----------------------------------------

#: (server, the server's reply mode) -> its row in the stateless scenario. The
#: main rows run in SSE mode, where a 2026-07-28 reply is JSON unless the
#: handler sends a notification first (so one server answers both variants);
#: the ":json-mode" rows are references for the JSON variant only (ours with
#: --reply-mode json, which still streams a 2026-07-28 call's progress, but the
#: row is about JSON; the SDK with json_response=True: never SSE).
STATELESS_LABELS = {
    "raw": LABELS["raw"],
    "ours": LABELS["ours"],
    "sdk": LABELS["sdk"],
    "ours:json-mode": "trio-mcp-sessions, `--reply-mode json`",
    "sdk:json-mode": "mcp SDK 2.3.0, `json_response=True`",
}
STATELESS_ROWS = {
    ("raw", "sse"): "raw",
    ("ours", "sse"): "ours",
    ("sdk", "sse"): "sdk",
    ("ours", "json"): "ours:json-mode",
    ("sdk", "json"): "sdk:json-mode",
}


def scenario_stateless(run: Run) -> dict[str, Any]:
    a = run.args
    out: dict[str, Any] = {
        "method": f"2026-07-28 tools/call with no session (version and client capabilities in "
        f"_meta, MCP-Protocol-Version / Mcp-Method / Mcp-Name headers) over {a.concurrency} "
        f"keep-alive connections, closed loop, every answer checked; JSON: the echo tool, "
        f"answered as JSON; SSE: a tool that reports one progress step (progressToken in "
        f"_meta), answered as an SSE stream; all servers up at once, measured in turn, "
        f"{a.rounds} rounds of {a.calls_seconds} s per server and variant (medians over the "
        f"rounds), after a {a.warmup} s warm-up per variant",
        "json": {},
        "sse": {},
    }

    def applies(server: Server, reply: str) -> bool:
        # The JSON-mode rows are references for JSON answers only; the raw server's
        # mode is for the session era.
        return reply == "json" or server.name == "raw" or server.reply_mode == "sse"

    async def prepare(server: Server) -> None:
        for reply in ("json", "sse"):
            if applies(server, reply):
                await loadgen.stateless_calls(
                    server.target,
                    concurrency=a.concurrency,
                    count=10**7,
                    seconds=a.warmup,
                    reply=reply,
                )

    async def measure(server: Server, _state: None, reply: str) -> dict[str, Any] | None:
        if not applies(server, reply):
            return None
        result = await measured(
            server,
            lambda: loadgen.stateless_calls(
                server.target,
                concurrency=a.concurrency,
                count=10**7,
                seconds=a.calls_seconds,
                reply=reply,
            ),
        )
        per_op(result, "requests")
        return result

    def describe(name: str, mode: str, reply: str, r: dict[str, Any]) -> str:
        lat = r["latency_ms"].get("tools/call", {})
        return (
            f"  stateless {reply} {STATELESS_ROWS[(name, mode)]}: {r['requests_per_s']} calls/s, "
            f"p50 {lat.get('p50')} p99 {lat.get('p99')} ms, server "
            f"{r.get('server_cpu_ms_per_op')} ms CPU/call ({r['server_cpu_pct']}%), "
            f"client {r.get('client_cpu_ms_per_op')} ({r['client_cpu_pct']}%), "
            f"failures {r['failures']}"
        )

    configs = [(name, mode) for (name, mode) in STATELESS_ROWS if name in a.servers]
    measured_ = interleaved(run, "stateless", configs, prepare, measure, ["json", "sse"], describe)
    for (name, mode, reply), result in measured_.items():
        out[reply][STATELESS_ROWS[(name, mode)]] = result
    for reply in ("json", "sse"):
        ours = _get(out, reply, "ours", "requests_per_s")
        line = ", ".join(
            f"ours/{other} {_fmt(_ratio(ours, _get(out, reply, other, 'requests_per_s')), 3)}"
            for other in ("raw", "sdk", "sdk:json-mode")
            if other in out[reply]
        )
        if ours is not None and line:
            print(f"  stateless {reply}: {line}", flush=True)
    return out


# -- scenario 7: a flood of 2026-07-28 calls ----------------------------------------------

#: (server, variant) -> its row in the modern flood. "keyed" is ours with its
#: budgets keyed on the X-Bench-Client header (bench/servers/keyed.py).
MODERN_FLOOD_ROWS = {
    "keyed": "ours",
    "keyed:no-call-rate-limit": "ours:no-call-rate-limit",
    "sdk": "sdk",
}
MODERN_FLOOD_LABELS = {
    "ours": "trio-mcp-sessions, per-client call budget and in-flight cap",
    "ours:no-call-rate-limit": "trio-mcp-sessions, no per-client limits",
    "sdk": "mcp SDK 2.3.0 (no call rate limit)",
}


def _budget_bound(limit: str, seconds: float) -> int:
    """The most calls a per-client sliding window of *limit* admits in *seconds*."""
    count, _, window = limit.partition("/")
    return int(count) * (int(seconds // float(window)) + 1)


async def _sampling_rss(
    server: Server,
    samples: list[list[Any]],
    phase: str,
    t0: float,
    work: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run *work* while sampling the server's VmRSS every 0.1 s into *samples*."""
    async with trio.open_nursery() as nursery:

        async def sample() -> None:
            while True:
                samples.append([round(time.monotonic() - t0, 2), phase, server.rss_kib()])
                await trio.sleep(0.1)

        nursery.start_soon(sample)
        result = await work()
        nursery.cancel_scope.cancel()
    return result


async def _flood_process(
    run: Run, server: Server, seconds: float, good: Callable[[], Awaitable[dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the flood in its own process (bench/loadgen.py modern-flood), run *good* under it.

    Its own process, so the flood's client CPU is not the well-behaved
    clients' event loop; *good* starts once the flood says it is starting,
    and the flood goes on half a second longer. Returns (good, flood).
    """
    a = run.args
    command = [
        sys.executable, str(BENCH / "loadgen.py"), server.url, "modern-flood",
        "--concurrency", str(a.modern_flood_connections),
        "--seconds", str(seconds + 0.5),
        "--pause-ms", str(_flood_pause_ms(a)),
        "--cpu-ms", str(a.modern_flood_cpu_ms),
        "--client", "flood",
        *(["--rate", str(a.modern_flood_rate)] if a.modern_flood_rate else []),
    ]  # fmt: skip
    log = run.log_dir / f"modern-flood-client-{server.name}-{server.pid}.log"
    err = await trio.open_file(log, "ab")
    try:
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err.wrapped, cwd=ROOT
        )
    finally:
        await err.aclose()
    assert process.stdout is not None
    out = bytearray()
    try:
        with trio.fail_after(30):
            while b"FLOODING\n" not in out:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    raise RuntimeError(f"the flood client ended before it began; see {log}")
                out += chunk
        result = await good()
        with trio.fail_after(seconds + 30):
            while chunk := await process.stdout.receive_some():
                out += chunk
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()  # this PID only: the flood client this call started
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the flood client exited with {process.returncode}; see {log}")
    flood: dict[str, Any] = json.loads(bytes(out).split(b"FLOODING\n", 1)[1])
    return result, flood


def _flood_pause_ms(a: argparse.Namespace) -> float:
    """How long the flood's calls make the tool wait (the good clients' by default)."""
    if a.modern_flood_flood_pause_ms is None:
        return float(a.modern_flood_pause_ms)
    return float(a.modern_flood_flood_pause_ms)


def scenario_modern_flood(run: Run) -> dict[str, Any]:
    a = run.args
    seconds = a.modern_flood_seconds
    think = a.modern_flood_think_ms / 1000
    pause = {"ms": a.modern_flood_pause_ms, "cpu_ms": a.modern_flood_cpu_ms}
    server_args = shlex.split(a.modern_flood_server_args)
    if a.modern_flood_inflight:
        server_args = ["--max-inflight-per-client", str(a.modern_flood_inflight), *server_args]
    out: dict[str, Any] = {
        "method": "2026-07-28 tools/call of a tool that "
        + (
            f"computes for {a.modern_flood_cpu_ms:g} ms of CPU, then "
            if a.modern_flood_cpu_ms
            else ""
        )
        + f"waits {a.modern_flood_pause_ms:g} ms, no session. "
        f"{a.modern_flood_clients} well-behaved clients (each its own "
        f"X-Bench-Client name and keep-alive connection; closed loop, "
        f"{a.modern_flood_think_ms:g} ms between an answer and the next call); per round "
        f"{seconds:g} s of them alone, then {seconds:g} s of them while one more client "
        f"(X-Bench-Client: flood, in its own process) calls the same tool "
        + (f"at {a.modern_flood_rate:g}/s" if a.modern_flood_rate else "as fast as it can")
        + f" on {a.modern_flood_connections} connections, whatever the answers"
        + (
            f" (its calls make the tool wait {_flood_pause_ms(a):g} ms)"
            if _flood_pause_ms(a) != a.modern_flood_pause_ms
            else ""
        )
        + ". Ours "
        f"(bench/servers/keyed.py: the header is the principal, the budgets are keyed on it): "
        f"--call-rate-limit-per-client {a.modern_flood_limit}"
        + (f" {shlex.join(server_args)}" if server_args else "")
        + "; the SDK has no call rate limit; default reply modes (SSE; these answers are "
        f"JSON); all servers up at once, measured in turn, {a.rounds} rounds (medians), after "
        f"a {a.warmup:g} s warm-up; server VmRSS sampled every 0.1 s while measured",
        "limit": a.modern_flood_limit,
        "server_args": server_args,
    }
    timelines: dict[str, list[list[Any]]] = {}
    t0 = time.monotonic()

    def good(server: Server, seconds: float) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: loadgen.keyed_calls(
            server.target,
            clients=a.modern_flood_clients,
            count=10**7,
            seconds=seconds,
            arguments=pause,
            think=think,
        )

    async def prepare(server: Server) -> list[list[Any]]:
        await good(server, a.warmup)()
        await trio.sleep(0.3)
        samples: list[list[Any]] = []  # [seconds since the scenario began, phase, KiB]
        timelines[MODERN_FLOOD_ROWS[server.key]] = samples
        return samples

    async def measure(server: Server, samples: list[list[Any]], _variant: None) -> dict[str, Any]:
        baseline = await _sampling_rss(
            server, samples, "baseline", t0, lambda: measured(server, good(server, seconds))
        )
        per_op(baseline, "requests")
        result: dict[str, Any] = {"baseline": baseline}

        async def flood() -> dict[str, Any]:
            good_result, flood_result = await _flood_process(
                run, server, seconds, lambda: measured(server, good(server, seconds))
            )
            per_op(good_result, "requests")
            result.update(flood=good_result, flood_client=flood_result)
            return good_result

        await _sampling_rss(server, samples, "flood", t0, flood)
        # What the flood cost the server: its CPU beyond the good clients' (as
        # they used it alone), per flood call sent while the good clients ran.
        f, fc = result["flood"], result["flood_client"]
        extra = f["server_cpu_s"] - baseline["server_cpu_s"] * f["wall_s"] / baseline["wall_s"]
        calls = fc["sent_per_s"] * f["wall_s"]
        if calls:
            fc["server_cpu_ms_per_call"] = round(max(0.0, extra) * 1000 / calls, 3)
        await trio.sleep(0.5)
        samples.append([round(time.monotonic() - t0, 2), "after", server.rss_kib()])
        return result

    def describe(name: str, _mode: str, _variant: None, r: dict[str, Any]) -> str:
        b = r["baseline"]["latency_ms"].get("tools/call", {})
        f = r["flood"]["latency_ms"].get("tools/call", {})
        fc = r["flood_client"]
        failures = {**r["baseline"]["failures"], **r["flood"]["failures"]}
        return (
            f"  modern-flood {MODERN_FLOOD_ROWS[name]}: p50 {b.get('p50')} -> {f.get('p50')} ms, "
            f"p99 {b.get('p99')} -> {f.get('p99')} ms "
            f"(x{_fmt(_ratio(f.get('p99'), b.get('p99')))}); good calls/s "
            f"{r['baseline']['requests_per_s']} -> {r['flood']['requests_per_s']}; server CPU "
            f"{r['baseline']['server_cpu_pct']}% -> {r['flood']['server_cpu_pct']}%; flood "
            f"{fc.get('sent_per_s')}/s, answers {fc.get('statuses')}; good-client failures "
            f"{failures or 'none'}"
        )

    configs: list[tuple[str, str, str]] = []
    if "ours" in a.servers:
        configs.append(("keyed", "sse", ""))
        if a.modern_flood_reference:
            configs.append(("keyed", "sse", "no-call-rate-limit"))
    if "sdk" in a.servers:
        configs.append(("sdk", "sse", ""))
    measured_ = interleaved(
        run,
        "modern-flood",
        configs,
        prepare,
        measure,
        [None],
        describe,
        ours_args=["--call-rate-limit-per-client", a.modern_flood_limit, *server_args],
    )
    for (name, _mode, _variant), result in measured_.items():
        key = MODERN_FLOOD_ROWS[name]
        samples = timelines.get(key) or []
        if samples:
            kib = [s[2] for s in samples]
            result["rss"] = {
                "start_mib": round(kib[0] / 1024, 1),
                "peak_mib": round(max(kib) / 1024, 1),
                "end_mib": round(kib[-1] / 1024, 1),
                "peak_baseline_mib": round(
                    max(s[2] for s in samples if s[1] == "baseline") / 1024, 1
                ),
                "peak_flood_mib": round(
                    max((s[2] for s in samples if s[1] == "flood"), default=0) / 1024, 1
                ),
                # Growth that goes on round after round is a leak; the first
                # round's is the process warming up (connections, caches).
                "after_each_round_mib": [round(s[2] / 1024, 1) for s in samples if s[1] == "after"],
                "samples": samples,
            }
        if key == "ours":
            # The flood's 200s: at most what its own budget admits, every round.
            bound = [
                _budget_bound(a.modern_flood_limit, r["flood_client"]["seconds"])
                for r in result["rounds"]
            ]
            admitted = [r["flood_client"]["statuses"].get("200", 0) for r in result["rounds"]]
            result["flood_admitted"] = admitted
            result["flood_admitted_bound"] = bound
            held = all(n <= b for n, b in zip(admitted, bound, strict=True))
            result["flood_held_to_budget"] = held
        out[key] = result
    return out


SCENARIOS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "churn": scenario_churn,
    "throughput": scenario_throughput,
    "memory": scenario_memory,
    "scale": scenario_scale,
    "flood": scenario_flood,
    "stateless": scenario_stateless,
    "modern-flood": scenario_modern_flood,
}


# -- reporting ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("trio", "hypercorn", "h11", "mcp", "anyio", "starlette", "trio-mcp-sessions"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "git": git_state(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


def git_state() -> str:
    """The commit measured, and whether src/ differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}{' (src/ modified)' if dirty else ''}"


def _get(d: Any, *keys: Any) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each as measured in this run."""
    out = []

    def add(name: str, value: float | None, limit: float, at_most: bool, detail: str) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "met": met,
                "at_most": at_most,
                "detail": detail,
            }
        )

    churn = results.get("churn", {})
    for level in ("c1", "c8"):
        ours = _get(churn, "ours", level, "server_cpu_ms_per_op")
        sdk = _get(churn, "sdk", level, "server_cpu_ms_per_op")
        if ours is not None or sdk is not None:
            add(
                f"server CPU per churned session, ours/SDK ({level.replace('c', 'c=')})",
                _ratio(ours, sdk),
                0.40,
                True,
                f"{_fmt(ours, 3)} ms vs {_fmt(sdk, 3)} ms",
            )
    tp = results.get("throughput", {})
    ours = _get(tp, "json", "ours", "requests_per_s")
    raw = _get(tp, "json", "raw", "requests_per_s")
    if ours is not None or raw is not None:
        add(
            "tools/call throughput, JSON mode, ours/raw POST ceiling",
            _ratio(ours, raw),
            0.70,
            False,
            f"{_fmt(ours, 0)} vs {_fmt(raw, 0)} req/s",
        )
    st = results.get("stateless", {})
    for reply in ("json", "sse"):
        ours = _get(st, reply, "ours", "requests_per_s")
        raw = _get(st, reply, "raw", "requests_per_s")
        if ours is not None or raw is not None:
            add(
                f"stateless 2026-07-28 tools/call, {reply.upper()} replies, ours/raw",
                _ratio(ours, raw),
                0.80,
                False,
                f"{_fmt(ours, 0)} vs {_fmt(raw, 0)} calls/s",
            )
    mem = results.get("memory", {}).get("ours")
    if mem:
        add("KiB per idle session (ours)", mem["kib_per_idle_session"], 8.0, True, "")
        add(
            "KiB per session with a GET stream (ours)",
            mem["kib_per_session_with_get"],
            30.0,
            True,
            "",
        )
    levels = _get(results, "scale", "ours", "levels") or []
    if len(levels) >= 2:
        first, last = levels[0], levels[-1]
        p_first = _get(first, "tools_call", "latency_ms", "tools/call", "p50")
        p_last = _get(last, "tools_call", "latency_ms", "tools/call", "p50")
        add(
            f"tools/call p50 at {last['live_sessions']:,} / at {first['live_sessions']:,} "
            "live sessions (ours)",
            _ratio(p_last, p_first),
            1.2,
            True,
            f"{_fmt(p_last, 3)} ms vs {_fmt(p_first, 3)} ms",
        )
    flood = _get(results, "flood", "ours")
    if flood:
        b = _get(flood, "baseline", "latency_ms", "tools/call", "p99")
        f = _get(flood, "flood", "latency_ms", "tools/call", "p99")
        add(
            "well-behaved p99 with / without the flood (ours)",
            _ratio(f, b),
            1.5,
            True,
            f"{_fmt(f, 2)} ms vs {_fmt(b, 2)} ms",
        )
    mf = _get(results, "modern-flood", "ours")
    if mf:
        b = _get(mf, "baseline", "latency_ms", "tools/call", "p99")
        f = _get(mf, "flood", "latency_ms", "tools/call", "p99")
        add(
            "2026-07-28 flood: well-behaved p99 with / without the flood (ours)",
            _ratio(f, b),
            1.5,
            True,
            f"{_fmt(f, 2)} ms vs {_fmt(b, 2)} ms",
        )
        rss = mf.get("rss") or {}
        # "Flat", read as: the peak at most a tenth above where the run began.
        add(
            "2026-07-28 flood: server RSS peak / start (ours)",
            _ratio(rss.get("peak_mib"), rss.get("start_mib")),
            1.1,
            True,
            f"{_fmt(rss.get('start_mib'), 1)} → {_fmt(rss.get('peak_mib'), 1)} → "
            f"{_fmt(rss.get('end_mib'), 1)} MiB",
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m = meta["machine"]
    parts: list[str] = [
        f"Run {meta['started']} on {m['cores']}-core {m['cpu']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; commit {m.get('git', 'unknown')}; {meta.get('duration_s', '?')} s in all.\n"
    ]
    servers = [s for s in SERVER_NAMES if s in results["meta"]["options"]["servers"]]

    churn = results.get("churn")
    if churn:
        parts.append("### Session churn\n")
        parts.append(
            "| server | concurrency | sessions/s | session p50 (ms) | session p99 (ms) "
            "| server CPU ms/session | server CPU % | client CPU ms/session | ours/this CPU |"
        )
        parts.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for level in [f"c{c}" for c in results["meta"]["options"]["churn_levels"]]:
            for name in servers:
                r = _get(churn, name, level)
                if not r:
                    continue
                ours_cpu = _get(churn, "ours", level, "server_cpu_ms_per_op")
                lat = _get(r, "latency_ms", "session") or {}
                parts.append(
                    f"| {LABELS[name]} | {level[1:]} | {_fmt(r['sessions_per_s'], 1)} "
                    f"| {_fmt(lat.get('p50'))} | {_fmt(lat.get('p99'))} "
                    f"| {_fmt(r.get('server_cpu_ms_per_op'), 3)} | {_fmt(r['server_cpu_pct'], 0)} "
                    f"| {_fmt(r.get('client_cpu_ms_per_op'), 3)} "
                    f"| {_fmt(_ratio(ours_cpu, r.get('server_cpu_ms_per_op')))} |"
                )
        parts.append("")

    tp = results.get("throughput")
    if tp:
        parts.append("### Tool-call throughput on open sessions\n")
        parts.append(
            "| reply mode | server | req/s | p50 (ms) | p99 (ms) | server CPU ms/req "
            "| server CPU % | client CPU ms/req | ours/this req/s | this/raw JSON req/s |"
        )
        parts.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        raw_json = _get(tp, "json", "raw", "requests_per_s")
        for mode in ("json", "sse"):
            for name in [*servers, "ours:no-event-store"]:
                r = _get(tp, mode, name)
                if not r:
                    continue
                lat = _get(r, "latency_ms", "tools/call") or {}
                ours = _get(tp, mode, "ours", "requests_per_s")
                parts.append(
                    f"| {mode.upper()} | {LABELS[name]} | {_fmt(r['requests_per_s'], 0)} "
                    f"| {_fmt(lat.get('p50'))} | {_fmt(lat.get('p99'))} "
                    f"| {_fmt(r.get('server_cpu_ms_per_op'), 3)} | {_fmt(r['server_cpu_pct'], 0)} "
                    f"| {_fmt(r.get('client_cpu_ms_per_op'), 3)} "
                    f"| {_fmt(_ratio(ours, r['requests_per_s']))} "
                    f"| {_fmt(_ratio(r['requests_per_s'], raw_json))} |"
                )
        parts.append("")

    st = results.get("stateless")
    if st:
        parts.append("### Stateless tools/call (2026-07-28, no session)\n")
        parts.append(
            "| reply | server | calls/s | p50 (ms) | p99 (ms) | server CPU ms/call "
            "| server CPU % | client CPU ms/call | ours/this calls/s | this/raw calls/s |"
        )
        parts.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for reply in ("json", "sse"):
            raw = _get(st, reply, "raw", "requests_per_s")
            ours = _get(st, reply, "ours", "requests_per_s")
            for row in ("raw", "ours", "sdk", "ours:json-mode", "sdk:json-mode"):
                r = _get(st, reply, row)
                if not r:
                    continue
                lat = _get(r, "latency_ms", "tools/call") or {}
                fails = f" (failures: {json.dumps(r['failures'])})" if r.get("failures") else ""
                parts.append(
                    f"| {reply.upper()} | {STATELESS_LABELS[row]}{fails} "
                    f"| {_fmt(r['requests_per_s'], 0)} "
                    f"| {_fmt(lat.get('p50'))} | {_fmt(lat.get('p99'))} "
                    f"| {_fmt(r.get('server_cpu_ms_per_op'), 3)} | {_fmt(r['server_cpu_pct'], 0)} "
                    f"| {_fmt(r.get('client_cpu_ms_per_op'), 3)} "
                    f"| {_fmt(_ratio(ours, r['requests_per_s']))} "
                    f"| {_fmt(_ratio(r['requests_per_s'], raw))} |"
                )
        parts.append("")

    mem = results.get("memory")
    if mem:
        parts.append("### Memory per idle session\n")
        parts.append(
            "| server | sessions | KiB per idle session | KiB per session with a GET stream "
            "| RSS before → idle → with GET (MiB) | ours/this idle | ours/this with GET |"
        )
        parts.append("|---|---:|---:|---:|---|---:|---:|")
        for name in servers:
            r = mem.get(name)
            if not r:
                continue
            ours = mem.get("ours") or {}
            idle, get = "kib_per_idle_session", "kib_per_session_with_get"
            parts.append(
                f"| {LABELS[name]} | {r['sessions']:,} | {_fmt(r['kib_per_idle_session'])} "
                f"| {_fmt(r['kib_per_session_with_get'])} "
                f"| {r['rss_base_kib'] / 1024:.1f} → {r['rss_idle_kib'] / 1024:.1f} → "
                f"{r['rss_with_get_kib'] / 1024:.1f} "
                f"| {_fmt(_ratio(ours.get(idle), r[idle]))} "
                f"| {_fmt(_ratio(ours.get(get), r[get]))} |"
            )
        parts.append("")

    scale = results.get("scale")
    if scale:
        parts.append("### Scale\n")
        parts.append(
            "| server | live sessions | tools/call p50 (ms) | p99 (ms) | p50 ratio to smallest "
            "| session cycle p50 (ms) | p99 (ms) | RSS (MiB) | KiB per session "
            "| opened at (sessions/s) |"
        )
        parts.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        floor = _get(scale, "raw", "floor")
        if floor:
            tc = _get(floor, "tools_call", "latency_ms", "tools/call") or {}
            cy = _get(floor, "session_cycle", "latency_ms", "session") or {}
            parts.append(
                f"| {LABELS['raw']} | {DASH} | {_fmt(tc.get('p50'), 3)} | {_fmt(tc.get('p99'), 3)} "
                f"| {DASH} "
                f"| {_fmt(cy.get('p50'), 3)} | {_fmt(cy.get('p99'), 3)} "
                f"| {DASH} | {DASH} | {DASH} |"
            )
        for name in ("ours", "sdk"):
            levels = _get(scale, name, "levels") or []
            first = levels[0] if levels else None
            p_first = _get(first, "tools_call", "latency_ms", "tools/call", "p50")
            for lv in levels:
                short = f" ({lv['short']})" if "short" in lv else ""
                tc = _get(lv, "tools_call", "latency_ms", "tools/call") or {}
                cy = _get(lv, "session_cycle", "latency_ms", "session") or {}
                parts.append(
                    f"| {LABELS[name]} | {lv['live_sessions']:,}{short} | {_fmt(tc.get('p50'), 3)} "
                    f"| {_fmt(tc.get('p99'), 3)} | {_fmt(_ratio(tc.get('p50'), p_first))} "
                    f"| {_fmt(cy.get('p50'), 3)} | {_fmt(cy.get('p99'), 3)} "
                    f"| {lv['rss_kib'] / 1024:,.0f} | {_fmt(lv['rss_growth_kib_per_session'])} "
                    f"| {_fmt(lv['open_sessions_per_s'], 0)} |"
                )
        parts.append("")

    flood = results.get("flood")
    if flood:
        parts.append("### Flood\n")
        parts.append(
            "| server | p50 without (ms) | p50 with flood (ms) | p99 without (ms) "
            "| p99 with flood (ms) | p99 ratio | server CPU % without → with "
            "| flood sent/s | flood answers | well-behaved failures |"
        )
        parts.append("|---|---:|---:|---:|---:|---:|---|---:|---|---|")
        for name in servers:
            r = flood.get(name)
            if not r:
                continue
            b = _get(r, "baseline", "latency_ms", "tools/call") or {}
            f = _get(r, "flood", "latency_ms", "tools/call") or {}
            answers = ", ".join(
                f"{k}: {v:,}" for k, v in sorted(r["flood_client"].get("statuses", {}).items())
            )
            fails = {**r["baseline"]["failures"], **r["flood"]["failures"]}
            parts.append(
                f"| {LABELS[name]} | {_fmt(b.get('p50'))} | {_fmt(f.get('p50'))} "
                f"| {_fmt(b.get('p99'))} | {_fmt(f.get('p99'))} "
                f"| {_fmt(_ratio(f.get('p99'), b.get('p99')))} "
                f"| {_fmt(r['baseline']['server_cpu_pct'], 0)} → "
                f"{_fmt(r['flood']['server_cpu_pct'], 0)} "
                f"| {_fmt(r['flood_client'].get('sent_per_s'), 0)} | {answers} "
                f"| {json.dumps(fails) if fails else 'none'} |"
            )
        parts.append("")

    mf = results.get("modern-flood")
    if mf:
        parts.append("### 2026-07-28 flood: one client far over its call budget\n")
        parts.append(
            "| server | p50 without (ms) | p50 with flood (ms) | p99 without (ms) "
            "| p99 with flood (ms) | p99 ratio | good calls/s without → with "
            "| server CPU % without → with | server RSS start → peak → end (MiB) "
            "| flood sent/s | server CPU ms per flood call | flood answers | good-client failures |"
        )
        parts.append("|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|---|")
        for key in ("ours", "ours:no-call-rate-limit", "sdk"):
            r = mf.get(key)
            if not r:
                continue
            b = _get(r, "baseline", "latency_ms", "tools/call") or {}
            f = _get(r, "flood", "latency_ms", "tools/call") or {}
            fc = r["flood_client"]
            answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(fc.get("statuses", {}).items()))
            if "flood_admitted_bound" in r:
                held = "held" if r["flood_held_to_budget"] else "**over**"
                answers += (
                    f" (200s per round {r['flood_admitted']}, its budget admits at most "
                    f"{r['flood_admitted_bound']}: {held})"
                )
            if fc.get("malformed_429"):
                answers += f"; {fc['malformed_429']:,} 429s without Retry-After or error body"
            fails = {**r["baseline"]["failures"], **r["flood"]["failures"]}
            rss = r.get("rss") or {}
            parts.append(
                f"| {MODERN_FLOOD_LABELS[key]} | {_fmt(b.get('p50'))} | {_fmt(f.get('p50'))} "
                f"| {_fmt(b.get('p99'))} | {_fmt(f.get('p99'))} "
                f"| {_fmt(_ratio(f.get('p99'), b.get('p99')))} "
                f"| {_fmt(r['baseline']['requests_per_s'], 0)} → "
                f"{_fmt(r['flood']['requests_per_s'], 0)} "
                f"| {_fmt(r['baseline']['server_cpu_pct'], 0)} → "
                f"{_fmt(r['flood']['server_cpu_pct'], 0)} "
                f"| {_fmt(rss.get('start_mib'), 1)} → {_fmt(rss.get('peak_mib'), 1)} → "
                f"{_fmt(rss.get('end_mib'), 1)} "
                f"| {_fmt(fc.get('sent_per_s'), 0)} | {_fmt(fc.get('server_cpu_ms_per_call'), 3)} "
                f"| {answers} "
                f"| {json.dumps(fails) if fails else 'none'} |"
            )
        parts.append("")
        parts.append(f"Method: {mf['method']}.\n")

    checks = results.get("targets") or []
    if checks:
        parts.append("### Targets\n")
        parts.append("| target | measured | limit | met | |")
        parts.append("|---|---:|---:|---|---|")
        for t in checks:
            met = {True: "yes", False: "**no**", None: DASH}[t["met"]]
            op = "≤" if t["at_most"] else "≥"
            parts.append(
                f"| {t['target']} | {_fmt(t['value'], 3)} | {op} {t['limit']} | {met} "
                f"| {t['detail']} |"
            )
        parts.append("")
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller and shorter (< 2 minutes)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--servers", nargs="+", choices=SERVER_NAMES, default=list(SERVER_NAMES))
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per server (2)")
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds: churn, throughput, flood, stateless (3)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="throughput connections (8)")
    parser.add_argument(
        "--no-store-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="throughput: also run ours in SSE mode with --no-event-store (default on)",
    )
    parser.add_argument("--churn-levels", type=int, nargs="+", help="concurrency levels (1 8)")
    parser.add_argument("--churn-seconds", type=float, help="seconds per churn round (4)")
    parser.add_argument("--churn-count", type=int, help="sessions per churn level at most (5000)")
    parser.add_argument(
        "--calls-seconds", type=float, help="seconds per throughput and stateless round (4)"
    )
    parser.add_argument("--memory-sessions", type=int, help="idle sessions to open (2000)")
    parser.add_argument(
        "--scale-sizes", type=int, nargs="+", help="live sessions (100 10000 100000)"
    )
    parser.add_argument("--scale-seconds", type=float, help="seconds of calls per size (6)")
    parser.add_argument(
        "--sdk-open-seconds", type=float, help="the SDK's session-opening budget (150)"
    )
    parser.add_argument("--ours-open-seconds", type=float, help="our session-opening budget (300)")
    parser.add_argument(
        "--flood-seconds", type=float, help="seconds with and without per round (5)"
    )
    parser.add_argument("--flood-rate", type=float, default=500.0, help="initialize/s (500)")
    parser.add_argument("--flood-limit", default="10/60", help="ours: per-client limit (10/60)")
    parser.add_argument("--good-rate", type=float, default=200.0, help="well-behaved calls/s")
    parser.add_argument(
        "--modern-flood-seconds", type=float, help="modern-flood: seconds per phase per round (4)"
    )
    parser.add_argument(
        "--modern-flood-clients", type=int, default=8, help="modern-flood: well-behaved clients (8)"
    )
    parser.add_argument(
        "--modern-flood-think-ms",
        type=float,
        default=20.0,
        help="modern-flood: a well-behaved client's pause between answer and next call (20)",
    )
    parser.add_argument(
        "--modern-flood-pause-ms",
        type=float,
        default=5.0,
        help="modern-flood: how long the tool waits before answering (5)",
    )
    parser.add_argument(
        "--modern-flood-cpu-ms",
        type=float,
        default=0.0,
        help="modern-flood: CPU the tool spends before it waits, every call's (0)",
    )
    parser.add_argument(
        "--modern-flood-flood-pause-ms",
        type=float,
        default=None,
        help="modern-flood: how long the flood's calls make the tool wait (as the good ones')",
    )
    parser.add_argument(
        "--modern-flood-connections",
        type=int,
        default=64,
        help="modern-flood: the flooding client's connections (64)",
    )
    parser.add_argument(
        "--modern-flood-rate",
        type=float,
        default=0.0,
        help="modern-flood: the flood's calls/s in all, open loop (0: as fast as it can)",
    )
    parser.add_argument(
        "--modern-flood-limit",
        default="100/1",
        help="modern-flood, ours: --call-rate-limit-per-client (100/1)",
    )
    parser.add_argument(
        "--modern-flood-inflight",
        type=int,
        default=4,
        help="modern-flood, ours: --max-inflight-per-client (4; 0: none)",
    )
    parser.add_argument(
        "--modern-flood-server-args",
        default="",
        help="modern-flood, ours: more flags of `trio_mcp_sessions serve` (write it with =, "
        "e.g. --modern-flood-server-args='--call-rate-limit 2000/1')",
    )
    parser.add_argument(
        "--modern-flood-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="modern-flood: also run ours with no call rate limit (default on)",
    )
    parser.add_argument("--budget", type=float, help="seconds for the whole run (1200)")
    parser.add_argument(
        "--results-dir", default=str(RESULTS), help="where the JSON, markdown and logs go"
    )
    parser.add_argument("--no-plots", action="store_true", help="do not draw PNGs")
    parser.add_argument("--plots-dir", default=str(BENCH / "results"), help="where PNGs go")
    args = parser.parse_args(argv)
    defaults = {
        "warmup": (2.0, 0.5),
        "rounds": (3, 1),
        "churn_levels": ([1, 8], [8]),
        "churn_seconds": (4.0, 3.0),
        "churn_count": (5000, 2000),
        "calls_seconds": (4.0, 2.0),
        "memory_sessions": (2000, 300),
        "scale_sizes": ([100, 10_000, 100_000], [100, 2000]),
        "scale_seconds": (6.0, 1.5),
        "sdk_open_seconds": (150.0, 20.0),
        "ours_open_seconds": (300.0, 20.0),
        "flood_seconds": (5.0, 3.0),
        "modern_flood_seconds": (4.0, 2.0),
        "budget": (1200.0, 150.0),
    }
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    options = {k: v for k, v in vars(args).items() if k != "plots_dir"}
    results: dict[str, Any] = {
        "meta": {
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(),
            "options": options,
        }
    }
    print(f"# benchmark run {run.stamp}: {json.dumps(results['meta']['machine'])}", flush=True)
    for name in args.scenarios:
        print(f"## {name}", flush=True)
        began = time.monotonic()
        results[name] = SCENARIOS[name](run)
        results[name]["seconds"] = round(time.monotonic() - began, 1)
    results["targets"] = targets(results)
    results["meta"]["duration_s"] = round(time.monotonic() - run.started, 1)
    results["meta"].update(
        server_stops=run.stops,
        server_log_problems=run.log_problems,
        skipped=run.skipped,
        errors=run.errors,
    )
    run.results_dir.mkdir(parents=True, exist_ok=True)
    path = run.results_dir / f"{run.stamp}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    report = markdown(results)
    path.with_suffix(".md").write_text(report + "\n")
    print()
    print(report)
    if not args.no_plots:
        try:
            import plots
        except ImportError as exc:
            print(f"(no plots: {exc}; pip install matplotlib)")
        else:
            for png in plots.draw(results, Path(args.plots_dir), run.stamp):
                print(f"plot: {png}")
    print(f"results: {path} ({results['meta']['duration_s']} s)")
    if run.errors or run.log_problems:
        print(f"problems: {len(run.errors)} errors, server logs: {run.log_problems}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
