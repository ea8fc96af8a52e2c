"""The booking server, from a checkout: the code is ``trio_mcp_sessions.examples.booking``.

Run it::

    python -m trio_mcp_sessions serve examples/booking_server.py:server --bind 127.0.0.1:8000

then ``python examples/booking_server.py call http://127.0.0.1:8000/mcp`` plays a 2026-07-28
client (see the package module's docstring).
"""

from __future__ import annotations

import sys

from trio_mcp_sessions.examples.booking import client, main, server

__all__ = ["client", "main", "server"]

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
