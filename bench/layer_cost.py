"""Where a churned session's server CPU goes, layer by layer, on one Hypercorn trio worker.

Three servers, each in its own process, measured in interleaved rounds with the
same churn as ``bench/run.py`` (initialize, notifications/initialized,
tools/call, DELETE):

- **raw**: the raw ASGI app (``bench/servers/raw_asgi.py``): Hypercorn alone;
- **transport**: our ``StreamableHTTPApp`` over a manager that does nothing
  (``bench/servers/transport_only.py``): adds our HTTP transport;
- **ours**: trio-mcp-sessions as ``bench/run.py`` serves it: adds the sessions
  (worker task, cancel scopes, limiter, handler task, event store).

Differences between neighbours are each layer's cost per session.

    .venv/bin/python bench/layer_cost.py --rounds 7 --seconds 3 [--concurrency 1] [--reply-mode sse]

Bounded: every round is at most ``--count`` sessions and ``--seconds``; servers
bind 127.0.0.1 and are stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import run as runner  # noqa: E402

LAYERS = ("raw", "transport", "ours")


async def churn_cpu(server: runner.Server, args: argparse.Namespace) -> float:
    """Server CPU milliseconds per churned session over one bounded round."""
    before = server.cpu()
    result = await loadgen.churn(
        server.target, concurrency=args.concurrency, count=args.count, seconds=args.seconds
    )
    if result.get("failures"):
        raise RuntimeError(f"churn failed against {server.url}: {result['failures']}")
    return (server.cpu() - before) * 1000 / result["sessions"]


async def main(args: argparse.Namespace) -> dict[str, list[float]]:
    run = runner.Run(args)  # its log folder and its record of stops and log problems
    samples: dict[str, list[float]] = {name: [] for name in LAYERS}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                runner.running_server(run, name, "layers", reply_mode=args.reply_mode)
            )
            for name in LAYERS
        }
        for server in servers.values():  # warm-up
            await loadgen.churn(server.target, concurrency=1, count=500, seconds=2)
        for n in range(args.rounds):
            for name in LAYERS:
                samples[name].append(await churn_cpu(servers[name], args))
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in samples.items()))
    if run.log_problems:
        raise RuntimeError(f"server logs show problems: {run.log_problems}")
    return samples


def table(samples: dict[str, list[float]]) -> str:
    """Medians per layer, and each layer's cost two ways.

    Servers are measured one after another within a round, so a per-round
    difference cancels slow drift of the machine; a busy neighbour only ever
    adds CPU time, so the difference of the minima is the other estimate.
    """
    lines = [
        "| layer | server CPU ms per session (median) | min to max "
        "| added by this layer: median of per-round differences (ms) | difference of minima (ms) |",
        "|---|---:|---|---:|---:|",
    ]
    previous: str | None = None
    for name in LAYERS:
        values = samples[name]
        spread = f"{min(values):.3f} to {max(values):.3f}"
        if previous is None:
            added = by_minima = runner.DASH
        else:
            deltas = [a - b for a, b in zip(values, samples[previous], strict=True)]
            added = f"{statistics.median(deltas):+.3f}"
            by_minima = f"{min(values) - min(samples[previous]):+.3f}"
        lines.append(
            f"| {name} | {statistics.median(values):.3f} | {spread} | {added} | {by_minima} |"
        )
        previous = name
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and server")
    parser.add_argument("--count", type=int, default=5000, help="sessions per round at most")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--reply-mode", choices=("sse", "json"), default="sse")
    arguments = parser.parse_args()
    print(table(trio.run(main, arguments)))
