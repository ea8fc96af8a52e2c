"""Host and Origin checks over real HTTP (DNS rebinding protection)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from _harness import (
    LATEST,
    SERVER_ERROR,
    assert_error,
    ping,
    start,
)
from conftest import initialize_body
from trio_mcp_sessions import HostPolicy

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# -- Host and Origin ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"host": "evil.example.com"}, id="host"),
        pytest.param({"host": "evil.example.com:80"}, id="host-with-port"),
        pytest.param({"origin": "http://evil.example.com"}, id="origin"),
        pytest.param({"origin": "null"}, id="origin-null"),
    ],
)
async def test_foreign_host_or_origin_is_403(
    start_server: StartServer, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.post(initialize_body(), headers=headers)
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)


async def test_foreign_origin_is_403_on_every_method(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        evil = {"origin": "http://evil.example.com"}
        r = await h.post(ping(), session_id, LATEST, headers=evil)
        assert_error(r, 403, SERVER_ERROR)
        r = await h.get(session_id, headers=evil)
        assert_error(r, 403, SERVER_ERROR)
        r = await h.delete(session_id, LATEST, headers=evil)
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        assert h.manager.get_session(session_id) is not None


@pytest.mark.parametrize(
    "origin", ["http://localhost:1234", "http://127.0.0.1:9", "https://localhost"]
)
async def test_loopback_origin_is_accepted(
    start_server: StartServer, http: httpx.AsyncClient, origin: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        r = await h.post(initialize_body(), headers={"origin": origin})
        assert r.status_code == 200, r.text
        assert h.stats().created == 1


async def test_host_policy_allows_a_configured_host(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(
            start_server, http, host_policy=HostPolicy(allowed_hosts=("mcp.example.com",))
        )
        r = await h.post(initialize_body(), headers={"host": "mcp.example.com"})
        assert r.status_code == 200, r.text
        assert h.stats().created == 1
        before = h.stats()
        r = await h.post(initialize_body())  # Host: 127.0.0.1:PORT is not on the list
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)


async def test_host_policy_accepts_same_origin_requests_for_a_configured_host(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    """Behind a reverse proxy on loopback, a page served from the allowed host may call us.

    ``Host: mcp.example.com`` is allowed explicitly; the browser then sends
    ``Origin: https://mcp.example.com``, the very same host. That is not a
    DNS-rebinding attack, so it should be served, while a foreign origin
    still gets 403.
    """
    with trio.fail_after(10):
        h = await start(
            start_server, http, host_policy=HostPolicy(allowed_hosts=("mcp.example.com",))
        )
        before = h.stats()
        r = await h.post(
            initialize_body(), headers={"host": "mcp.example.com", "origin": "https://evil.com"}
        )
        assert_error(r, 403, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        r = await h.post(
            initialize_body(),
            headers={"host": "mcp.example.com", "origin": "https://mcp.example.com"},
        )
        assert r.status_code == 200, r.text
        assert h.stats().created == 1
