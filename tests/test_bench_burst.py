"""bench/burst.py stays runnable: a tiny burst, ours capped, ours uncapped, the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_a_tiny_burst_is_capped_by_ours_and_admitted_by_the_others(tmp_path: Path) -> None:
    out = tmp_path / "burst.json"
    command = [sys.executable, str(BENCH / "burst.py"), "--calls", "12", "--wait-ms", "1000"]
    command += ["--max-inflight", "3", "--out", str(out)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| trio-mcp-sessions, --max-inflight 3 |" in done.stdout
    results = json.loads(out.read_text())
    capped = results["ours"]["statuses"]
    assert capped.get("200", 0) <= 3  # never more than the cap at once: the calls overlap
    assert capped.get("200", 0) + capped.get("503", 0) == 12
    assert results["ours-uncapped"]["statuses"] == {"200": 12}
    assert sum(results["sdk"]["statuses"].values()) == 12
