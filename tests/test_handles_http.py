"""Handles end to end over real HTTP: sessionless 2026-07-28 ``tools/call`` with carts.

The cart example (``examples/cart_server.py``) on a real Hypercorn, with the
principal taken from a header: a cart works for the user who made it, in
either era; another user's, an anonymous caller's, a checked-out or an
expired one is an ``isError`` result that tells the model what to do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from _harness import load_example, messages
from conftest import initialize_body
from trio_mcp_sessions import StreamableHTTPApp

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
NOT_FOUND = "cart handle expired or unknown; call create_cart again and use the handle it returns"


class Client:
    """One user's sessionless calls (``user=None``: no principal)."""

    def __init__(self, http: httpx.AsyncClient, url: str, user: str | None) -> None:
        self.http, self.url, self.user = http, url, user
        self.ids = iter(range(1, 1000))

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": name,
        }
        if self.user is not None:
            headers["x-user"] = self.user
        body = {
            "jsonrpc": "2.0",
            "id": next(self.ids),
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": META},
        }
        response = await self.http.post(self.url, content=json.dumps(body), headers=headers)
        assert response.status_code == 200, response.text
        (reply,) = messages(response)
        result: dict[str, Any] = reply["result"]
        assert result["resultType"] == "complete"
        return result


def refused(result: dict[str, Any]) -> str:
    assert result["isError"] is True, result
    text: str = result["content"][0]["text"]
    return text


async def serve_carts(start_server: StartServer) -> tuple[Any, str]:
    example = load_example("cart_server")
    app = StreamableHTTPApp(example.server, principal=example.principal)
    return example, await start_server(app)


async def test_carts_end_to_end_and_bound_to_their_user(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        example, url = await serve_carts(start_server)
        alice, bob, anyone = Client(http, url, "alice"), Client(http, url, "bob"), None
        anyone = Client(http, url, None)
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
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        example, url = await serve_carts(start_server)
        alice, bob = Client(http, url, "alice"), Client(http, url, "bob")
        first = (await alice.call("create_cart"))["structuredContent"]["cart_id"]
        for _ in range(5):  # the cap is 5 per user: the least recently used goes
            await alice.call("create_cart")
        assert refused(await alice.call("view_cart", cart_id=first)) == NOT_FOUND
        await bob.call("create_cart")  # Alice's carts are not in Bob's way
        stats = example.carts.statistics()
        assert (stats.created, stats.evicted, stats.handles) == (7, 1, 6)
        # The creating tool states the retention policy (the spec asks for it).
        listing = await http.post(
            url,
            content=json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
            ),
            headers={
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                "mcp-protocol-version": MODERN,
                "mcp-method": "tools/list",
            },
        )
        (reply,) = messages(listing)
        tools = {tool["name"]: tool for tool in reply["result"]["tools"]}
        assert tools["create_cart"]["description"].endswith(
            "Carts expire after 30 minutes without use or 1 day after creation."
            " At most 5 open per user; the least recently used goes beyond that."
        )


async def test_a_cart_made_in_a_session_is_the_same_users_sessionless(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    """Both eras see one principal: a 2025 session's cart works for its user at 2026-07-28."""
    with trio.fail_after(20):
        _, url = await serve_carts(start_server)
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "x-user": "alice",
        }
        r = await http.post(url, json=initialize_body(), headers=headers)
        assert r.status_code == 200, r.text
        headers |= {
            "mcp-session-id": r.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-11-25",
        }
        r = await http.post(
            url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        assert r.status_code == 202
        r = await http.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "create_cart", "arguments": {}},
            },
            headers=headers,
        )
        (reply,) = messages(r)
        cart_id = reply["result"]["structuredContent"]["cart_id"]
        await Client(http, url, "alice").call("add_item", cart_id=cart_id, sku="jam")
        assert (
            refused(await Client(http, url, "bob").call("view_cart", cart_id=cart_id)) == NOT_FOUND
        )


async def test_an_idle_cart_expires(
    start_server: StartServer, http: httpx.AsyncClient, mock_clock: trio.testing.MockClock
) -> None:
    """On trio's clock (moved by hand: the sockets are real), 30 minutes idle end a cart."""
    with trio.fail_after(20):  # each step its own deadline: the jumps would pass one for all
        example, url = await serve_carts(start_server)
        alice = Client(http, url, "alice")
        cart_id = (await alice.call("create_cart"))["structuredContent"]["cart_id"]
    for jump in (1799, 1799):
        mock_clock.jump(jump)
        with trio.fail_after(20):
            await alice.call("add_item", cart_id=cart_id, sku="tea")  # still there; renewed
    mock_clock.jump(1800)
    with trio.fail_after(20):
        assert refused(await alice.call("add_item", cart_id=cart_id, sku="tea")) == NOT_FOUND
    assert example.carts.statistics().expired == 1


async def test_handle_counts_are_exported_as_metrics(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    pytest.importorskip(
        "prometheus_client", reason="metrics need the [metrics] extra (in [dev]): prometheus-client"
    )
    with trio.fail_after(20):
        example = load_example("cart_server")
        app = StreamableHTTPApp(
            example.server, principal=example.principal, metrics_path="/metrics"
        )
        app.export_handles(example.carts)
        url = await start_server(app)
        alice = Client(http, url, "alice")
        for _ in range(6):
            cart_id = (await alice.call("create_cart"))["structuredContent"]["cart_id"]
        await alice.call("check_out", cart_id=cart_id)
        await Client(http, url, "bob").call("view_cart", cart_id=cart_id)
        text = (await http.get(url.removesuffix("/mcp") + "/metrics")).text
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
