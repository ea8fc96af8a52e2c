"""Stateful tools without sessions: a shopping cart behind a server-minted handle.

At 2026-07-28 there is no session to keep a cart in, so ``create_cart``
returns a handle and the other tools take it back (``server/tools.mdx``,
"Stateful Tools"). :class:`HandleStore` bounds the carts (per user and in
all), expires them, binds each to the user who made it, and answers an
expired or unknown cart with an ``isError`` result telling the model to make
a new one. The same tools work for 2025 clients in a session.

Run it::

    python -m trio_mcp_sessions.examples.cart

(``serve trio_mcp_sessions.examples.cart:server`` would serve the tools without
the handle sweeper or the ``X-User`` principal). In a checkout,
``examples/cart_server.py`` is this server.

Users come from an ``X-User`` header here, for the example's sake; a real
server takes the principal from its authentication.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_mcp_sessions import Context, HandleLimits, HandleStore, McpServer, serve

server = McpServer("carts", "1.0.0", instructions="Create a cart, add items, check out.")

#: In memory; ``backend=SqliteHandleBackend("carts.db")`` keeps carts across restarts.
carts = HandleStore(
    "cart",
    create_tool="create_cart",
    limits=HandleLimits(max_handles=10_000, max_per_principal=5, idle_timeout=1800),
)


def principal(scope: Any) -> str | None:
    """The user, from ``X-User`` (stand-in for real authentication)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-user" and value:
            return bytes(value).decode("latin-1")
    return None


@server.tool(description="Start an empty cart; returns its cart_id. " + carts.retention_note())
async def create_cart(ctx: Context) -> dict[str, str]:
    return {"cart_id": await carts.create(ctx, {"items": {}})}


@server.tool()
async def add_item(ctx: Context, cart_id: str, sku: str, quantity: int = 1) -> dict[str, Any]:
    """Add an item to a cart.

    Args:
        cart_id: The cart_id create_cart returned.
        sku: The product.
        quantity: How many (1 to 99).
    """
    if not 1 <= quantity <= 99:
        raise ValueError("quantity must be between 1 and 99")
    cart: dict[str, Any] = await carts.get(ctx, cart_id)
    cart["items"][sku] = cart["items"].get(sku, 0) + quantity
    await carts.update(ctx, cart_id, cart)
    return cart


@server.tool()
async def view_cart(ctx: Context, cart_id: str) -> dict[str, Any]:
    """What a cart holds.

    Args:
        cart_id: The cart_id create_cart returned.
    """
    cart: dict[str, Any] = await carts.get(ctx, cart_id)
    return cart


@server.tool()
async def check_out(ctx: Context, cart_id: str) -> str:
    """Order what the cart holds; the cart is gone afterwards.

    Args:
        cart_id: The cart_id create_cart returned.
    """
    cart = await carts.get(ctx, cart_id)
    await carts.delete(ctx, cart_id)
    count = sum(cart["items"].values())
    return f"ordered {count} item{'s' if count != 1 else ''}"


async def main() -> None:
    """Serve the carts on 127.0.0.1:8000 with the sweeper beside, until Ctrl-C."""
    async with trio.open_nursery() as nursery:
        await nursery.start(carts.run)  # sweeps expired carts in the background
        await serve(server, principal=principal)  # on 127.0.0.1:8000 until Ctrl-C
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
