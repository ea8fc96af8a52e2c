"""The official MCP Python SDK (``mcp`` 2.3.0) with the benchmark tool, on Hypercorn's trio worker.

``MCPServer.streamable_http_app()``: a Starlette app whose lifespan runs the
SDK's stateful ``StreamableHTTPSessionManager`` (DNS-rebinding protection for
loopback on, as the SDK sets it up by default). Environment:

- ``SDK_REPLY_MODE``: ``sse`` (the SDK default) or ``json`` (``json_response=True``).
- ``SDK_MAX_SESSIONS``: the session cap (default the SDK's 10,000; ``none`` for no cap).

    SDK_REPLY_MODE=json python bench/servers/sdk_server.py --bind 127.0.0.1:0
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import trio
from mcp.server.mcpserver import Context, MCPServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hypercorn import run

# WARNING, like the other servers: the SDK would otherwise configure INFO logging.
server = MCPServer("bench", version="1.0.0", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
async def progress_echo(text: str, ctx: Context) -> str:
    """Report one progress step, then echo the text back."""
    await ctx.report_progress(1, 1)
    return text


@server.tool()
async def pause(ms: float, cpu_ms: float = 0.0) -> str:
    """Compute for cpu_ms of CPU, wait ms (at most 1,000 / 5,000 ms), then answer (as ours does)."""
    end = time.process_time() + max(0.0, min(cpu_ms, 1000.0)) / 1000
    while time.process_time() < end:
        pass
    await trio.sleep(max(0.0, min(ms, 5000.0)) / 1000)  # the trio worker runs anyio on trio
    return "done"


def build_app() -> object:
    mode = os.environ.get("SDK_REPLY_MODE", "sse")
    if mode not in ("sse", "json"):
        raise SystemExit(f"SDK_REPLY_MODE must be sse or json, not {mode!r}")
    cap = os.environ.get("SDK_MAX_SESSIONS", "10000")
    return server.streamable_http_app(
        json_response=mode == "json",
        max_sessions=None if cap == "none" else int(cap),
    )


if __name__ == "__main__":
    run(build_app(), __doc__.split("\n\n")[0])
