"""bench/'s 2026-07-28 flood keeps measuring what it says it measures.

The load generator's keyed clients against our benchmark server with the
budget keyed the way bench/servers/keyed.py keys it (the X-Bench-Client
header is the principal), over real Hypercorn on 127.0.0.1: each client has
its own budget, the flood is held to its own, and every refusal is a
well-formed 429. Then the whole scenario (``bench/run.py --scenarios
modern-flood``), tiny, end to end: our server through keyed.py, the SDK, the
flood in its own process, the table.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trio_mcp_sessions import CallLimits, RateLimit

if TYPE_CHECKING:
    from conftest import StartServer

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(path: Path) -> Any:
    """A bench/ script as a module (bench/ is not a package, nor on mypy's path)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


loadgen = _load(BENCH / "loadgen.py")
ours = _load(BENCH / "servers" / "ours.py")
keyed = _load(BENCH / "servers" / "keyed.py")


async def test_each_client_named_in_the_header_has_its_own_budget(
    start_server: StartServer,
) -> None:
    url = await start_server(
        ours.server,
        principal=keyed.principal,
        call_limits=CallLimits(
            rate_limit_per_client=RateLimit(4, 60), rate_limit_key=keyed.client_key
        ),
    )
    target = loadgen.Target.from_url(url)
    good = await loadgen.keyed_calls(target, clients=3, count=30, seconds=20, arguments={"ms": 1})
    # Ten calls each were tried (30 in all); four each got through.
    assert good["requests"] == 12
    assert good["latency_ms"]["tools/call"]["n"] == 12
    assert good["failures"] == {"tools/call:429": 18}
    flood = await loadgen.modern_flood(
        target, connections=4, seconds=20, count=40, arguments={"ms": 1}
    )
    assert flood["sent"] == 40
    assert flood["statuses"] == {"200": 4, "429": 36}
    assert flood["malformed_429"] == 0


async def test_the_budget_is_the_peer_address_without_the_header(
    start_server: StartServer,
) -> None:
    url = await start_server(
        ours.server,
        principal=keyed.principal,
        call_limits=CallLimits(
            rate_limit_per_client=RateLimit(4, 60), rate_limit_key=keyed.client_key
        ),
    )
    target = loadgen.Target.from_url(url)
    mcp = loadgen.McpHttp(target)  # no X-Bench-Client: everyone on 127.0.0.1 is one client
    conn = loadgen.Connection(target)
    statuses = []
    try:
        for _ in range(6):
            _id, raw = mcp.stateless_call_request(loadgen.PAUSE_TOOL, False, {"ms": 1})
            statuses.append((await conn.request(raw)).status)
    finally:
        await conn.aclose()
    assert statuses == [200] * 4 + [429] * 2


def test_the_scenario_runs_tiny(tmp_path: Path) -> None:
    command = [
        sys.executable, str(BENCH / "run.py"), "--scenarios", "modern-flood",
        "--rounds", "1", "--warmup", "0.2", "--modern-flood-seconds", "0.5",
        "--modern-flood-clients", "2", "--modern-flood-connections", "8",
        # Passed through to ours as they are (the lead's bounds go here too).
        "--modern-flood-server-args=--call-rate-limit 100000/1",
        "--results-dir", str(tmp_path), "--no-plots",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "### 2026-07-28 flood" in done.stdout
    [path] = tmp_path.glob("*.json")
    results = json.loads(path.read_text())
    assert results["meta"]["errors"] == [], results["meta"]["errors"]
    assert results["meta"]["server_log_problems"] == []
    flood = results["modern-flood"]
    assert flood["server_args"] == [
        "--max-inflight-per-client", "4", "--call-rate-limit", "100000/1"
    ]  # fmt: skip
    assert set(flood) >= {"ours", "ours:no-call-rate-limit", "sdk"}
    for row in ("ours", "ours:no-call-rate-limit", "sdk"):
        r = flood[row]
        assert r["baseline"]["failures"] == {}, (row, r["baseline"])
        assert r["flood"]["failures"] == {}, (row, r["flood"])
        assert r["baseline"]["latency_ms"]["tools/call"]["n"] > 0
        assert r["flood"]["latency_ms"]["tools/call"]["n"] > 0
        assert r["rss"]["peak_mib"] >= r["rss"]["start_mib"] > 0
        assert r["flood_client"]["malformed_429"] == 0
    # The flood is refused by ours (its budget: 100/s) and served by the others.
    assert flood["ours"]["flood_client"]["statuses"].get("429", 0) > 0
    assert flood["ours"]["flood_held_to_budget"] is True
    for row in ("ours:no-call-rate-limit", "sdk"):
        assert set(flood[row]["flood_client"]["statuses"]) == {"200"}, flood[row]
    assert any(t["target"].startswith("2026-07-28 flood") for t in results["targets"])
