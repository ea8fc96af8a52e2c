"""trio-mcp-sessions with the benchmark tools, served by the project's own command line.

Served in-process on Hypercorn's trio worker by ``trio_mcp_sessions.serve``
(SIGTERM drains and stops it; access log off)::

    python -m trio_mcp_sessions serve bench/servers/ours.py:server --bind 127.0.0.1:0 \\
        --reply-mode json --log-level warning [--rate-limit-per-client 10/60] ...

``echo`` answers at once; ``progress_echo`` reports one progress step first
(when the request asks for progress), which turns a 2026-07-28 reply into an
SSE stream: the stateless scenario's SSE variant. ``pause`` waits a few
milliseconds first (a tool that waits on something; it can compute first,
too): the modern flood's tool.
"""

from __future__ import annotations

import time

import trio

from trio_mcp_sessions import Context, McpServer

server = McpServer("bench", "1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back.

    Args:
        text: The text.
    """
    return text


@server.tool()
async def progress_echo(text: str, ctx: Context) -> str:
    """Report one progress step, then echo the text back.

    Args:
        text: The text.
    """
    await ctx.report_progress(1, 1)
    return text


@server.tool()
async def pause(ms: float, cpu_ms: float = 0.0) -> str:
    """Compute for *cpu_ms* milliseconds of CPU, wait *ms* (at most 1,000 / 5,000), then answer.

    Args:
        ms: How long to wait, in milliseconds.
        cpu_ms: How much CPU to spend first, in milliseconds.
    """
    spin(cpu_ms)
    await trio.sleep(max(0.0, min(ms, 5000.0)) / 1000)
    return "done"


def spin(cpu_ms: float) -> None:
    """Spend *cpu_ms* milliseconds (at most 1,000) of this process's CPU: a tool that computes."""
    end = time.process_time() + max(0.0, min(cpu_ms, 1000.0)) / 1000
    while time.process_time() < end:
        pass
