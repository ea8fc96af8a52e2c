"""The notebook server, from a checkout: the code is ``trio_mcp_sessions.examples.notes``.

Run it (bounded sessions on 127.0.0.1, in-memory stores)::

    python -m trio_mcp_sessions serve examples/notes_server.py:server --bind 127.0.0.1:8000

or ``python examples/notes_server.py``, or with Hypercorn's own command line from
``examples/``: ``hypercorn --worker-class trio --bind 127.0.0.1:8000 notes_server:app``.
After ``pip install trio-mcp-sessions`` the same server is
``trio_mcp_sessions.examples.notes:server``, from any folder.
"""

from __future__ import annotations

import trio

from trio_mcp_sessions.examples.notes import app, limits, main, server

__all__ = ["app", "limits", "main", "server"]

if __name__ == "__main__":
    trio.run(main)
