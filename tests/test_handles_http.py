"""Handles end to end through the HTTP app: sessionless 2026-07-28 ``tools/call`` with carts.

The cart example (``examples/cart_server.py``) served by its app, driven in
process by the test kit (``trio_mcp_sessions.testing``, so the handles' TTLs
run on trio's mock clock), with the principal taken from a header: a cart
works for the user who made it, in either era; another user's, an anonymous
caller's, a checked-out or an expired one is an ``isError`` result that
tells the model what to do.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from _harness import load_example
from trio_mcp_sessions import StreamableHTTPApp
from trio_mcp_sessions.testing import McpTestClient, open_test_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.usefixtures("no_tracebacks")

MODERN = "2026-07-28"
NOT_FOUND = "cart handle expired or unknown; call create_cart again and use the handle it returns"


class Client:
    """One user's sessionless calls (``user=None``: no principal)."""

    def __init__(self, app: StreamableHTTPApp, user: str | None) -> None:
        headers = {"x-user": user} if user is not None else None
        self.kit = McpTestClient(app, protocol_version=MODERN, headers=headers)

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.kit.call_tool(name, arguments)  # asserts a 200 with a result
        assert result["resultType"] == "complete"
        return result


def refused(result: dict[str, Any]) -> str:
    assert result["isError"] is True, result
    text: str = result["content"][0]["text"]
    return text


@asynccontextmanager
async def serve_carts(**options: Any) -> AsyncIterator[tuple[Any, StreamableHTTPApp]]:
    example = load_example("cart_server")
    app = StreamableHTTPApp(example.server, principal=example.principal, **options)
    async with open_test_client(app):
        yield example, app


async def test_carts_end_to_end_and_bound_to_their_user(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_carts() as (example, app):
        alice, bob, anyone = Client(app, "alice"), Client(app, "bob"), Client(app, None)
        made = await alice.call("create_cart")
        cart_id = made["structuredContent"]["cart_id"]
        assert cart_id.startswith("cart_")
        assert (await alice.call("add_item", cart_id=cart_id, sku="tea", quantity=2))[
            "structuredContent"
        ] == {"items": {"tea": 2}}
        await alice.call("add_item", cart_id=cart_id, sku="tea")
        # Another user, and a caller without a principal, get what a stranger gets.
        for other in (bob, anyone):
            assert refused(await other.call("view_cart", cart_id=cart_id)) == NOT_FOUND
            assert refused(await other.call("add_item", cart_id=cart_id, sku="x")) == NOT_FOUND
            assert refused(await other.call("check_out", cart_id=cart_id)) == NOT_FOUND
        assert refused(await alice.call("view_cart", cart_id="cart_" + "x" * 32)) == NOT_FOUND
        assert refused(await alice.call("view_cart", cart_id="nonsense")) == NOT_FOUND
        # ... and changed nothing.
        view = await alice.call("view_cart", cart_id=cart_id)
        assert view["structuredContent"] == {"items": {"tea": 3}}
        done = await alice.call("check_out", cart_id=cart_id)
        assert done["content"][0]["text"] == "ordered 3 items"
        assert refused(await alice.call("view_cart", cart_id=cart_id)) == NOT_FOUND
        stats = example.carts.statistics()
        assert (stats.created, stats.deleted, stats.handles, stats.not_found) == (1, 1, 0, 9)


async def test_per_user_cap_and_the_retention_note(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_carts() as (example, app):
        alice, bob = Client(app, "alice"), Client(app, "bob")
        first = (await alice.call("create_cart"))["structuredContent"]["cart_id"]
        for _ in range(5):  # the cap is 5 per user: the least recently used goes
            await alice.call("create_cart")
        assert refused(await alice.call("view_cart", cart_id=first)) == NOT_FOUND
        await bob.call("create_cart")  # Alice's carts are not in Bob's way
        stats = example.carts.statistics()
        assert (stats.created, stats.evicted, stats.handles) == (7, 1, 6)
        # The creating tool states the retention policy (the spec asks for it).
        listing = await Client(app, None).kit.request("tools/list")
        assert listing.status == 200
        (reply,) = listing.messages
        tools = {tool["name"]: tool for tool in reply["result"]["tools"]}
        assert tools["create_cart"]["description"].endswith(
            "Carts expire after 30 minutes without use or 1 day after creation."
            " At most 5 open per user; the least recently used goes beyond that."
        )


async def test_a_cart_made_in_a_session_is_the_same_users_sessionless(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Both eras see one principal: a 2025 session's cart works for its user at 2026-07-28."""
    async with serve_carts() as (_, app):
        session = McpTestClient(app, protocol_version="2025-11-25", headers={"x-user": "alice"})
        await session.initialize()
        assert session.session_id is not None
        made = await session.call_tool("create_cart")
        cart_id = made["structuredContent"]["cart_id"]
        await Client(app, "alice").call("add_item", cart_id=cart_id, sku="jam")
        assert refused(await Client(app, "bob").call("view_cart", cart_id=cart_id)) == NOT_FOUND


async def test_an_idle_cart_expires(autojump_clock: trio.testing.MockClock) -> None:
    """On trio's clock, 30 minutes idle end a cart; each use renews it."""
    async with serve_carts() as (example, app):
        alice = Client(app, "alice")
        cart_id = (await alice.call("create_cart"))["structuredContent"]["cart_id"]
        for _ in range(2):
            await trio.sleep(1799)
            await alice.call("add_item", cart_id=cart_id, sku="tea")  # still there; renewed
        await trio.sleep(1800)
        assert refused(await alice.call("add_item", cart_id=cart_id, sku="tea")) == NOT_FOUND
        assert example.carts.statistics().expired == 1


async def test_handle_counts_are_exported_as_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pytest.importorskip(
        "prometheus_client", reason="metrics need the [metrics] extra (in [dev]): prometheus-client"
    )
    example = load_example("cart_server")
    app = StreamableHTTPApp(example.server, principal=example.principal, metrics_path="/metrics")
    app.export_handles(example.carts)
    async with open_test_client(app) as anyone:
        alice = Client(app, "alice")
        for _ in range(6):
            cart_id = (await alice.call("create_cart"))["structuredContent"]["cart_id"]
        await alice.call("check_out", cart_id=cart_id)
        await Client(app, "bob").call("view_cart", cart_id=cart_id)
        text = (await anyone.send("GET", path="/metrics")).body.decode()
    for line in (
        'mcp_handles_live{store="cart"} 4.0',
        'mcp_handles_max{store="cart"} 10000.0',
        'mcp_handles_max_per_principal{store="cart"} 5.0',
        'mcp_handles_created_total{store="cart"} 6.0',
        'mcp_handles_closed_total{reason="deleted",store="cart"} 1.0',
        'mcp_handles_closed_total{reason="evicted",store="cart"} 1.0',
        'mcp_handles_closed_total{reason="expired",store="cart"} 0.0',
        'mcp_handles_refused_total{store="cart"} 0.0',
        'mcp_handles_not_found_total{store="cart"} 1.0',
        'mcp_handles_store_errors_total{store="cart"} 0.0',
    ):
        assert line in text, line
