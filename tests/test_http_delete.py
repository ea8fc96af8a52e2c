"""DELETE over real HTTP: it ends the session, its GET stream and its requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from _harness import (
    INVALID_REQUEST,
    LATEST,
    SESSION_NOT_FOUND,
    assert_error,
    call,
    ping,
    start,
)

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# -- DELETE ---------------------------------------------------------------------------


async def test_delete_without_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.delete(version=LATEST)
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)
        assert h.stats().closed == before.closed


async def test_delete_unknown_session_is_404(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.delete("no-such-session", LATEST)
        assert_error(r, 404, SESSION_NOT_FOUND)
        h.assert_nothing_allocated(before)
        assert h.stats().closed == before.closed


async def test_delete_ends_the_session(start_server: StartServer, http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        keep = await h.initialize()
        r = await h.delete(session_id, LATEST)
        assert r.status_code == 200
        stats = h.stats()
        assert stats.live_sessions == 1
        assert stats.closed == 1
        assert stats.closed_by_reason == {"deleted": 1}
        r = await h.post(ping(1), session_id, LATEST)
        assert_error(r, 404, SESSION_NOT_FOUND, maybe_id=1)
        r = await h.get(session_id)
        assert_error(r, 404, SESSION_NOT_FOUND)
        r = await h.delete(session_id, LATEST)
        assert_error(r, 404, SESSION_NOT_FOUND)
        # The other session is untouched.
        r = await h.post(ping(2), keep, LATEST)
        assert r.status_code == 200
        assert h.stats().live_sessions == 1


async def test_delete_ends_the_open_get_stream(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert r.status_code == 200
            await sse.priming()
            deleted = await h.delete(session_id, LATEST)
            assert deleted.status_code == 200
            assert await sse.rest() == []
        assert h.stats().live_sessions == 0


async def test_delete_ends_in_flight_requests_and_their_streams(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("POST", h.headers(session_id, LATEST), call("hang", 8)) as (r, sse):
            assert r.status_code == 200
            await sse.priming()
            deleted = await h.delete(session_id, LATEST)
            assert deleted.status_code == 200
            assert await sse.rest() == []
        assert h.stats().live_sessions == 0
