"""PNG plots of the scale and flood scenarios from a bench/run.py results file (needs matplotlib).

    .venv/bin/pip install matplotlib
    .venv/bin/python bench/plots.py bench/results/<timestamp>.json --out docs

writes ``bench-scale.png`` and ``bench-flood.png`` into the output directory
(``bench/run.py`` calls this itself and writes ``<timestamp>-scale.png`` ...
into bench/results/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"raw": "#888888", "ours": "#1f77b4", "sdk": "#d62728"}
LABELS = {"raw": "raw ASGI (ceiling)", "ours": "trio-mcp-sessions", "sdk": "mcp SDK 2.3.0"}


def _get(d: Any, *keys: Any) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def scale_plot(results: dict[str, Any], path: Path) -> Path | None:
    scale = results.get("scale")
    if not scale:
        return None
    fig, (ax_lat, ax_cycle, ax_mem) = plt.subplots(1, 3, figsize=(15, 4.6))
    for name in ("ours", "sdk"):
        levels = _get(scale, name, "levels") or []
        if not levels:
            continue
        sizes = [lv["live_sessions"] for lv in levels]
        for ax, key, kind in (
            (ax_lat, "tools_call", "tools/call"),
            (ax_cycle, "session_cycle", "session"),
        ):
            p50 = [lv[key]["latency_ms"][kind]["p50"] for lv in levels]
            p99 = [lv[key]["latency_ms"][kind]["p99"] for lv in levels]
            ax.plot(sizes, p50, "o-", color=COLORS[name], label=f"{LABELS[name]} p50")
            ax.plot(sizes, p99, "s--", color=COLORS[name], alpha=0.6, label=f"{LABELS[name]} p99")
        ax_mem.plot(
            sizes,
            [lv["rss_kib"] / 1024 for lv in levels],
            "o-",
            color=COLORS[name],
            label=LABELS[name],
        )
        last = levels[-1]
        if "short" in last:
            ax_mem.annotate(
                f"{LABELS[name]}: {last['live_sessions']:,} of {last['target_size']:,}\n"
                "sessions opened within its time bound",
                xy=(last["live_sessions"], last["rss_kib"] / 1024),
                xytext=(0.03, 0.62),
                textcoords="axes fraction",
                fontsize=8,
                color=COLORS[name],
                arrowprops={"arrowstyle": "->", "color": COLORS[name]},
            )
    floor = _get(scale, "raw", "floor")
    for ax, key, kind in (
        (ax_lat, "tools_call", "tools/call"),
        (ax_cycle, "session_cycle", "session"),
    ):
        p50 = _get(floor, key, "latency_ms", kind, "p50")
        if p50 is not None:
            ax.axhline(p50, color=COLORS["raw"], linestyle=":", label=f"{LABELS['raw']} p50")
    ax_lat.set_title("tools/call on a random live session (c=1)")
    ax_cycle.set_title("whole session: init + initialized + call + DELETE (c=1)")
    ax_mem.set_title("server RSS")
    for ax in (ax_lat, ax_cycle):
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
    ax_mem.set_ylabel("RSS (MiB)")
    for ax in (ax_lat, ax_cycle, ax_mem):
        ax.set_xscale("log")
        ax.set_xlabel("live sessions")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Scale: latency and memory against the number of live sessions (JSON replies)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def flood_plot(results: dict[str, Any], path: Path) -> Path | None:
    flood = results.get("flood")
    names = [n for n in ("raw", "ours", "sdk") if flood and n in flood]
    if not names:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    width = 0.38
    for ax, pct in zip(axes, ("p50", "p99"), strict=True):
        xs = range(len(names))
        without = [_get(flood, n, "baseline", "latency_ms", "tools/call", pct) for n in names]
        with_ = [_get(flood, n, "flood", "latency_ms", "tools/call", pct) for n in names]
        bars1 = ax.bar(
            [x - width / 2 for x in xs], without, width, label="without flood", color="#9ecae1"
        )
        bars2 = ax.bar(
            [x + width / 2 for x in xs], with_, width, label="with flood", color="#e6550d"
        )
        for bars in (bars1, bars2):
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks(list(xs), [LABELS[n] for n in names])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"well-behaved tools/call {pct}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    rate = results["meta"]["options"].get("flood_rate")
    limit = results["meta"]["options"].get("flood_limit")
    fig.suptitle(
        f"Flood: one client sends initialize at {rate:g}/s (ours: per-client limit {limit}; "
        "the SDK has no rate limit)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [
        scale_plot(results, out_dir / f"{prefix}-scale.png"),
        flood_plot(results, out_dir / f"{prefix}-flood.png"),
    ]
    return [p for p in made if p is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="bench/results/<timestamp>.json")
    parser.add_argument("--out", default="docs", help="directory for the PNGs (docs)")
    parser.add_argument("--prefix", default="bench", help="file name prefix (bench)")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    for path in draw(results, Path(args.out), args.prefix):
        print(path)


if __name__ == "__main__":
    main()
