"""The cart server, from a checkout: the code is ``trio_mcp_sessions.examples.cart``.

Run it::

    python examples/cart_server.py
"""

from __future__ import annotations

import trio

from trio_mcp_sessions.examples.cart import carts, main, principal, server

__all__ = ["carts", "main", "principal", "server"]

if __name__ == "__main__":
    trio.run(main)
