"""trio-mcp-sessions with the benchmark tool, served by the project's own command line.

Served in-process on Hypercorn's trio worker by ``trio_mcp_sessions.serve``
(SIGTERM drains and stops it; access log off)::

    python -m trio_mcp_sessions serve bench/servers/ours.py:server --bind 127.0.0.1:0 \\
        --reply-mode json --log-level warning [--rate-limit-per-client 10/60] ...
"""

from __future__ import annotations

from trio_mcp_sessions import McpServer

server = McpServer("bench", "1.0.0")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back.

    Args:
        text: The text.
    """
    return text
