"""PNG plots of the scale and flood scenarios from a bench/run.py results file (needs matplotlib).

    .venv/bin/pip install matplotlib
    .venv/bin/python bench/plots.py bench/results/<timestamp>.json --out docs

writes ``bench-scale.png``, ``bench-flood.png`` and ``bench-modern-flood.png``
(for the scenarios the file has) into the output directory
(``bench/run.py`` calls this itself and writes ``<timestamp>-scale.png`` ...
into bench/results/). ``soak_plot`` draws bench/soak.py's RSS curve
(bench/soak.py calls it itself).
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


MODERN_FLOOD = {
    "ours": ("trio-mcp-sessions,\nper-client call budget", "#1f77b4"),
    "ours:no-call-rate-limit": ("trio-mcp-sessions,\nno call rate limit", "#9ecae1"),
    "sdk": ("mcp SDK 2.3.0", "#d62728"),
}


def modern_flood_plot(results: dict[str, Any], path: Path) -> Path | None:
    """The 2026-07-28 flood: well-behaved p50/p99 with and without it, and the servers' RSS."""
    flood = results.get("modern-flood")
    names = [n for n in MODERN_FLOOD if flood and n in flood]
    if not names:
        return None
    fig, (ax_p50, ax_p99, ax_rss) = plt.subplots(1, 3, figsize=(16, 4.8))
    width = 0.38
    xs = range(len(names))
    for ax, pct in ((ax_p50, "p50"), (ax_p99, "p99")):
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
        ax.set_xticks(list(xs), [MODERN_FLOOD[n][0] for n in names], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"well-behaved 2026-07-28 tools/call {pct}")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for name in names:
        samples = _get(flood, name, "rss", "samples") or []
        label, color = MODERN_FLOOD[name]
        for phase, marker, size in (("baseline", "o", 4), ("flood", "x", 14), ("after", "s", 10)):
            points = [(t, kib / 1024) for t, p, kib in samples if p == phase]
            if points:
                ts, mib = zip(*points, strict=True)
                first = phase == "baseline"
                ax_rss.scatter(
                    ts,
                    mib,
                    s=size,
                    marker=marker,
                    color=color,
                    label=label.replace("\n", " ") if first else None,
                )
    ax_rss.set_xlabel("seconds into the scenario (servers measured in turn)")
    ax_rss.set_ylabel("server RSS (MiB)")
    ax_rss.set_ylim(bottom=0)
    ax_rss.set_title("server RSS while measured (every 0.1 s; x: with the flood)")
    ax_rss.grid(True, alpha=0.3)
    ax_rss.legend(fontsize=7)
    options = results["meta"]["options"]
    rate = options.get("modern_flood_rate")
    how = f"{rate:g} calls/s" if rate else "as fast as it can"
    fig.suptitle(
        f"2026-07-28 flood: one client calls {how} on "
        f"{options.get('modern_flood_connections')} connections (ours: per-client call budget "
        f"{options.get('modern_flood_limit')}; the SDK has no call rate limit)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def soak_plot(results: dict[str, Any], path: Path) -> Path | None:
    """bench/soak.py: the server's RSS and live sessions over time, the last half's fit."""
    soak = results.get("soak")
    samples = (soak or {}).get("samples") or []
    if not samples:
        return None
    fig, (ax_rss, ax_live) = plt.subplots(1, 2, figsize=(14, 4.8))
    ts = [s["t"] for s in samples]
    ax_rss.plot(ts, [s["rss_kib"] / 1024 for s in samples], "-", color=COLORS["ours"], lw=1.4,
                label="server RSS")  # fmt: skip
    rss = soak["rss"]
    load_end = soak.get("load_seconds") or ts[-1]
    start = rss.get("last_half_from_s")
    slope = rss.get("slope_last_half_mib_per_min")
    if start is not None and slope is not None:
        half = [s for s in samples if s["phase"] == "load" and s["t"] >= start]
        mean_t = sum(s["t"] for s in half) / len(half)
        mean_m = sum(s["rss_kib"] / 1024 for s in half) / len(half)
        xs = [half[0]["t"], half[-1]["t"]]
        ax_rss.plot(
            xs,
            [mean_m + slope / 60 * (x - mean_t) for x in xs],
            "--",
            color="#d62728",
            lw=1.6,
            label=f"last half fit: {slope:+.2f} MiB/min",
        )
    for ax in (ax_rss, ax_live):
        ax.axvspan(load_end, ts[-1], color="#bbbbbb", alpha=0.3, lw=0,
                   label="after the load (release, settle)")  # fmt: skip
        ax.set_xlabel("seconds")
        ax.grid(True, alpha=0.3)
    ax_rss.set_ylim(bottom=0)
    ax_rss.set_ylabel("RSS (MiB)")
    totals = soak["totals"]
    ax_rss.set_title(
        f"server RSS: start {rss.get('start_mib')}, peak {rss.get('peak_mib')}, "
        f"end {rss.get('end_mib')} MiB"
    )
    ax_rss.legend(fontsize=8, loc="lower right")
    live = [(s["t"], s["live_sessions"]) for s in samples if s["live_sessions"] is not None]
    if live:
        ax_live.plot(*zip(*live, strict=True), "-", color="#2ca02c", lw=1.2,
                     label="live sessions (server metrics)")  # fmt: skip
    ax_live.set_ylabel("live sessions")
    ax_live.set_ylim(bottom=0)
    done = ax_live.twinx()
    done.plot(ts, [s["churned"] for s in samples], "-", color="#9467bd", lw=1.2,
              label="sessions churned")  # fmt: skip
    done.set_ylabel("sessions churned (cumulative)")
    done.set_ylim(bottom=0)
    lines = ax_live.get_legend_handles_labels()
    more = done.get_legend_handles_labels()
    ax_live.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    ax_live.set_title(
        f"{soak['sessions_churned']:,} sessions, {soak['hostile_probes']:,} hostile probes; "
        f"5xx: {totals.get('5xx', 0):,}, connection errors: {totals.get('conn-error', 0):,}"
    )
    commit = results["meta"]["machine"].get("git", "?")
    fig.suptitle(f"Soak: churned sessions plus the hostile mix (commit {commit})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [
        scale_plot(results, out_dir / f"{prefix}-scale.png"),
        flood_plot(results, out_dir / f"{prefix}-flood.png"),
        modern_flood_plot(results, out_dir / f"{prefix}-modern-flood.png"),
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
