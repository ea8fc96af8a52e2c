"""The soak server (bench/soak.py): the benchmark's echo tool plus what the hostile mix needs.

Served like ``ours.py`` by the project's command line, on Hypercorn's trio
worker in this process (SIGTERM drains and stops it)::

    python -m trio_mcp_sessions serve bench/servers/soak_server.py:server --bind 127.0.0.1:0 \\
        --log-level warning --metrics-path /metrics

The extra tools are deliberately ordinary: a large reply (for readers that
stop reading), a tool that asks the client to sample and waits (left pending
by the soak), and a resource to subscribe to.
"""

from __future__ import annotations

from trio_mcp_sessions import Context, McpServer

server = McpServer("soak", "1.0.0")

_BIG_LIMIT = 4 * 1024 * 1024


@server.tool()
def echo(text: str) -> str:
    """Echo the text back.

    Args:
        text: The text.
    """
    return text


@server.tool()
def big(size: int) -> str:
    """A reply of *size* characters (at most 4 MiB), for clients that stop reading.

    Args:
        size: How many characters.
    """
    return "x" * max(0, min(size, _BIG_LIMIT))


@server.tool()
async def ask(prompt: str, ctx: Context) -> str:
    """Ask the client's model (sampling/createMessage) and wait up to 20 s for the answer.

    Args:
        prompt: The prompt.
    """
    result = await ctx.sample(prompt, max_tokens=16, timeout=20.0)
    return str(result.get("content"))


@server.resource("soak://watched", mime_type="text/plain")
def watched() -> str:
    """A resource clients may subscribe to."""
    return "watched"
