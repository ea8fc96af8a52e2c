"""A server for the drain and stalled-reader tests: one tool takes its time, one answers big."""

from __future__ import annotations

import trio

from trio_mcp_sessions import McpServer

server = McpServer("drain-tests", "1.0")


@server.tool()
async def pause(seconds: float) -> str:
    """Sleep, then answer.

    Args:
        seconds: How long to sleep.
    """
    await trio.sleep(seconds)
    return f"paused {seconds}"


@server.tool()
def big(kib: int) -> str:
    """Answer with *kib* KiB of text.

    Args:
        kib: The answer's size in KiB.
    """
    return "x" * (kib * 1024)
