"""bench/'s stateless scenario sends what a 2026-07-28 server accepts, and checks what it gets.

The load generator's ``stateless_calls`` against our benchmark server (the
tools ``bench/servers/ours.py`` defines) and against the raw ceiling, over
real Hypercorn on 127.0.0.1: every call must succeed in the shape its
variant asks for, and a reply in the wrong shape must count as a failure.
``bench/stateless_cost.py`` (the same request against the ASGI app alone)
stays runnable.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

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


async def _calls(url: str, reply: str, count: int = 25) -> dict[str, Any]:
    result: dict[str, Any] = await loadgen.stateless_calls(
        loadgen.Target.from_url(url), concurrency=3, count=count, seconds=30, reply=reply
    )
    return result


async def test_ours_answers_both_variants(start_server: StartServer) -> None:
    url = await start_server(ours.server)
    for reply in ("json", "sse"):
        result = await _calls(url, reply)
        assert result["failures"] == {}, (reply, result)
        assert result["requests"] == 25
        assert result["latency_ms"]["tools/call"]["n"] == 25


async def test_json_reply_mode_still_streams_a_modern_calls_progress(
    start_server: StartServer,
) -> None:
    """reply_mode is the session era's: at 2026-07-28 progress still opens an SSE reply
    (with no GET stream, a JSON-only answer would lose it), so both variants pass."""
    url = await start_server(ours.server, reply_mode="json")
    for reply in ("json", "sse"):
        result = await _calls(url, reply, count=5)
        assert result["failures"] == {}, (reply, result)
        assert result["requests"] == 5


async def test_the_raw_ceiling_answers_both_variants(nursery: trio.Nursery) -> None:
    raw = _load(BENCH / "servers" / "raw_asgi.py")
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    binds = await nursery.start(
        partial(hypercorn_serve, raw.app, config, shutdown_trigger=trio.sleep_forever)
    )
    for reply in ("json", "sse"):
        result = await _calls(f"{binds[0]}/mcp", reply)
        assert result["failures"] == {}, (reply, result)
        assert result["requests"] == 25


def test_stateless_cost_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "stateless_cost.py"), "--requests", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "raw json",
        "raw sse",
        "transport json",
        "ours json",
        "ours sse",
    ]
    assert "application/json" in lines[3]
    assert "text/event-stream" in lines[4]
