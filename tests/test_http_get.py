"""The GET stream over real HTTP: opening it, one per session, a client leaving, and
resumption with ``Last-Event-ID``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from _harness import (
    INVALID_REQUEST,
    JSON_ACCEPT,
    LATEST,
    SERVER_ERROR,
    SESSION_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    assert_error,
    assert_sse_headers,
    call,
    parse_sse,
    start,
)
from trio_mcp_sessions._protocol._era import ADVERTISED_VERSIONS

if TYPE_CHECKING:
    import httpx

    from conftest import StartServer

pytestmark = pytest.mark.usefixtures("no_tracebacks")


# -- GET ------------------------------------------------------------------------------


async def test_get_without_sse_accept_is_406(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        r = await h.get(session_id, headers={"accept": "application/json"})
        assert_error(r, 406, SERVER_ERROR)
        h.assert_nothing_allocated(before)
        # No stream was attached: a proper GET still gets through.
        async with h.stream("GET", h.get_headers(session_id)) as (r, _):
            assert r.status_code == 200


async def test_get_without_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        before = h.stats()
        r = await h.get()
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)


async def test_get_unknown_session_is_404(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        await h.initialize()
        before = h.stats()
        r = await h.get("no-such-session")
        assert_error(r, 404, SESSION_NOT_FOUND)
        h.assert_nothing_allocated(before)


async def test_get_unsupported_version_header_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        r = await h.get(session_id, "1999-01-01")
        body = assert_error(r, 400, UNSUPPORTED_PROTOCOL_VERSION)
        assert body["error"]["data"]["supported"] == list(ADVERTISED_VERSIONS)


async def test_get_opens_an_sse_stream(start_server: StartServer, http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert_sse_headers(r)
            assert r.headers["mcp-session-id"] == session_id
            priming = await sse.priming()
            assert priming.retry == 1000
            # The stream stays open: nothing more arrives for a moment.
            with trio.move_on_after(0.2) as idle:
                await sse.next()
            assert idle.cancelled_caught


async def test_second_concurrent_get_is_409(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert r.status_code == 200
            await sse.priming()
            before = h.stats()
            second = await h.get(session_id)
            assert_error(second, 409, SERVER_ERROR)
            h.assert_nothing_allocated(before)


async def test_get_after_the_first_get_disconnects_is_served(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
            assert r.status_code == 200
            await sse.priming()
        # The server notices the disconnect asynchronously: poll briefly.
        first = await h.get_until_served(session_id)
        assert first is not None
        assert first.is_priming


async def test_a_busy_get_stream_notices_its_client_leaving(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    # JSON replies: the call's logs go to the GET stream, one after another
    # without a pause, so its writer is never idle; it must notice the
    # disconnect anyway, or the session could never open a GET stream again.
    with trio.fail_after(10):
        h = await start(start_server, http, reply_mode="json")
        session_id = await h.initialize(accept=JSON_ACCEPT)
        async with trio.open_nursery() as nursery:

            async def call_firehose() -> None:
                await h.post(
                    call("firehose", 90), session_id, LATEST, headers={"accept": JSON_ACCEPT}
                )

            async with h.stream("GET", h.get_headers(session_id)) as (r, sse):
                assert r.status_code == 200
                nursery.start_soon(call_firehose)
                for _ in range(20):
                    assert (await sse.next()) is not None
            assert (await h.get_until_served(session_id)) is not None
            nursery.cancel_scope.cancel()


# -- GET with Last-Event-ID (resumption) ----------------------------------------------


async def test_resume_after_post_disconnect_replays_the_result(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        headers = h.headers(session_id, LATEST)
        async with h.stream("POST", headers, call("slow", 42, delay=0.3)) as (r, sse):
            assert_sse_headers(r)
            priming = await sse.priming()
            assert priming.id is not None
        # Disconnected before the result. Resume on GET.
        resume_headers = h.get_headers(session_id, last_event_id=priming.id)
        async with h.stream("GET", resume_headers) as (r, sse):
            assert_sse_headers(r)
            events = await sse.rest()
        assert events, "the resumed stream carried nothing"
        assert not any(e.is_priming for e in events)
        assert all(e.id for e in events)
        replies = [e.json() for e in events if e.data]
        assert replies == [
            {
                "jsonrpc": "2.0",
                "id": 42,
                "result": {"content": [{"type": "text", "text": "slept"}]},
            }
        ]
        assert h.inflight(session_id) == 0


async def test_resume_of_a_finished_stream_replays_from_the_store(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        r = await h.post(call("chatty", 43), session_id, LATEST)
        priming, log, reply = parse_sse(r.text)
        assert priming.id is not None
        assert log.id is not None
        # Everything after the log event, i.e. the result alone.
        resume_headers = h.get_headers(session_id, last_event_id=log.id)
        async with h.stream("GET", resume_headers) as (r, sse):
            assert r.status_code == 200
            events = await sse.rest()
        assert [(e.id, e.json()) for e in events] == [(reply.id, reply.json())]


@pytest.mark.parametrize("last_event_id", ["nosuchstream_1", "garbage", "abc_", "_5", "abc_-1"])
async def test_resume_with_unknown_or_malformed_last_event_id_is_400(
    start_server: StartServer, http: httpx.AsyncClient, last_event_id: str
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        session_id = await h.initialize()
        before = h.stats()
        r = await h.get(session_id, last_event_id=last_event_id)
        assert_error(r, 400, INVALID_REQUEST)
        h.assert_nothing_allocated(before)
        # The failed resume attached nothing: a plain GET still works.
        async with h.stream("GET", h.get_headers(session_id)) as (r, _):
            assert r.status_code == 200


async def test_resume_with_an_event_id_from_another_session_is_400(
    start_server: StartServer, http: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        h = await start(start_server, http)
        first = await h.initialize()
        other = await h.initialize()
        r = await h.post(call("echo", 44, text="mine"), first, LATEST)
        [_, reply] = parse_sse(r.text)
        assert reply.id is not None
        r = await h.get(other, last_event_id=reply.id)
        assert_error(r, 400, INVALID_REQUEST)
