"""Writing answers: a plain response, a JSON aggregation, an SSE stream.

Also how a response notices that its client is gone while it waits: Hypercorn
reports a disconnect only through ``receive()``, so every wait here watches
``receive()`` in the response's own task (no second task, no nursery).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import trio

from ._http import encode_sse

if TYPE_CHECKING:
    from .._streams import EventStream, SseEvent

Scope: TypeAlias = MutableMapping[str, Any]
ASGIMessage: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[ASGIMessage]]
Send: TypeAlias = Callable[[ASGIMessage], Awaitable[None]]

_JSON: Final = (b"content-type", b"application/json")
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


async def _send_simple(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode("ascii"))],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _reply_sse(
    receive: Receive,
    send: Send,
    stream: EventStream,
    extra_headers: list[tuple[bytes, bytes]],
    *,
    ends_at: float | None = None,
    retry_ms: int | None = None,
) -> None:
    """Write *stream* as an SSE response until it ends or its client leaves.

    *ends_at* (trio time; an access token's expiry) ends it sooner, with a
    ``retry`` hint of *retry_ms*: the client reconnects with a fresh token
    (and ``Last-Event-ID``), and nothing it has not read is lost.
    """
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, *extra_headers],
            }
        )
        # Every send is a locked, shielded write in Hypercorn's trio worker:
        # coalesce what is ready (priming event, backlog, the answer of a
        # quick call) into one chunk, and finish in the same write when the
        # stream already ended.
        first = [*([stream.priming] if stream.priming is not None else []), *stream.replay]
        ready, ended = await _wait_briefly(stream)
        events = first + ready
        deadline = math.inf if ends_at is None else ends_at
        # One task per response: it writes, and between writes it waits for
        # news on the stream and for the client's disconnect at once.
        busy_writes = 0
        while True:
            chunk = b"".join(encode_sse(e.event_id, e.data, e.retry_ms) for e in events)
            if not ended and trio.current_time() >= deadline:
                ended = True  # the token expired: end here, with a retry hint
                chunk += encode_sse(None, b"", retry_ms)
            if ended:
                stream.detach()  # the session is idle again before the client sees the end
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                busy_writes += 1
            events, ended = _drain_ready(stream)
            if not events and not ended:
                busy_writes = 0
                if deadline == math.inf:  # the common case: no scope to enter and leave
                    if not await _wait_for_news(stream, receive):
                        return  # the client is gone
                else:
                    with trio.move_on_at(deadline):
                        if not await _wait_for_news(stream, receive):
                            return
                events, ended = _drain_ready(stream)
            elif busy_writes >= _POLL_EVERY:
                # A stream that always has news never parks in receive(),
                # so look for a disconnect now and then.
                busy_writes = 0
                if await _client_gone(receive):
                    return
    finally:
        stream.detach()


async def _reply_json(
    receive: Receive,
    send: Send,
    stream: EventStream,
    expected: int,
    is_batch: bool,
    session_header: tuple[bytes, bytes],
) -> None:
    try:
        # Fast path: a quick handler answers within a few scheduling rounds
        # (the session's worker wakes, opens its nursery, runs the handler).
        ready, ended = await _wait_briefly(stream)
        answers = [e.data for e in ready if e.data]
        while len(answers) < expected and not ended:
            if not await _wait_for_news(stream, receive):
                return  # the client is gone; nobody to answer
            ready, ended = _drain_ready(stream)
            answers += [e.data for e in ready if e.data]
    finally:
        stream.detach()
    if not answers:
        # Every request was cancelled by the client, or the session ended.
        await _send_simple(send, 202, b"", [session_header])
        return
    body = b"[" + b",".join(answers) + b"]" if is_batch else answers[0]
    await _send_simple(send, 200, body, [_JSON, session_header])


#: Scheduling rounds a reply waits for a quick handler before it parks
#: (measured: a quick call needs three or four).
_QUICK_ROUNDS: Final = 4


async def _wait_briefly(stream: EventStream) -> tuple[list[SseEvent], bool]:
    """Events ready within a few scheduling rounds, and whether the stream ended.

    Returns as soon as the stream has ended or events have arrived; never
    waits on the clock, only lets already-runnable tasks run.
    """
    ready: list[SseEvent] = []
    for _ in range(_QUICK_ROUNDS):
        await trio.lowlevel.checkpoint()
        more, ended = _drain_ready(stream)
        ready += more
        if ended:
            return ready, True
    return ready, False


def _drain_ready(stream: EventStream) -> tuple[list[SseEvent], bool]:
    """The events already waiting, and whether the stream has ended (all read then)."""
    return stream.take_ready(), stream.ended


#: Writes in a row without a pause after which a response checks for a disconnect.
_POLL_EVERY: Final = 8


async def _disconnected_before(scope: trio.CancelScope, receive: Receive) -> bool:
    """Read ``receive()`` in *scope*: ``True`` on a disconnect, ``False`` once *scope* is cancelled.

    Hypercorn reports a gone client only through ``receive()``, which is a
    memory channel's, so cancelling the wait loses nothing.
    """
    with scope:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
    return False


async def _client_gone(receive: Receive) -> bool:
    """Whether the client has disconnected, without waiting for it (one scheduling round).

    The wait is cancelled from the run loop's next pass, so a disconnect
    already queued is seen and nothing else is waited for.
    """
    poll = trio.CancelScope()
    trio.lowlevel.current_trio_token().run_sync_soon(poll.cancel)
    return await _disconnected_before(poll, receive)


async def _wait_for_news(stream: EventStream, receive: Receive) -> bool:
    """Park until the stream has news (``True``) or the client disconnects (``False``).

    Waiting for the disconnect in the response's own task, in a cancel scope
    that the stream cancels on news, needs no second task and no nursery per
    response: an open GET stream is the unit of memory a server multiplies by
    its connections.
    """
    waiting = trio.CancelScope()
    stream.set_waker(waiting.cancel)
    try:
        return not await _disconnected_before(waiting, receive)
    finally:
        stream.set_waker(None)


#: Seconds between keep-alive comments on a quiet 2026-07-28 SSE response (as the SDKs).
KEEPALIVE_SECONDS: Final = 15.0
_KEEPALIVE: Final = b": keep-alive\n\n"


async def _reply_modern(
    receive: Receive,
    send: Send,
    stream: EventStream,
    status_of: Callable[[], int],
    *,
    sse: bool,
    keepalive: float = KEEPALIVE_SECONDS,
) -> None:
    """Answer one 2026-07-28 request: JSON when nothing but the reply came, else SSE.

    The content type must be chosen before the status is known, so the
    response starts only when there is something to say: the reply alone (a
    JSON answer, with the HTTP status its error asks for), a notification
    (an SSE stream, 200), or *keepalive* seconds of silence (SSE, with a
    keep-alive comment, so a long call does not look dead to proxies).
    Leaving cancels the request's handler (the stream's detach does).
    """
    try:
        ready, ended = await _wait_briefly(stream)
        deadline = trio.current_time() + keepalive
        while not ready and not ended:
            with trio.move_on_at(deadline):
                if not await _wait_for_news(stream, receive):
                    return  # the client is gone: its request is cancelled
            ready, ended = _drain_ready(stream)
            if trio.current_time() >= deadline and sse:
                break
            if not sse:
                deadline = math.inf  # JSON only: wait for the reply, however long
        if ended and (not sse or len(ready) <= 1):
            stream.detach()
            body = ready[-1].data if ready else b""
            if not body:
                await _send_simple(send, 202, b"", [])
                return
            await _send_simple(send, status_of(), body, [_JSON])
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        events = ready
        while True:
            chunk = b"".join(encode_sse(e.event_id, e.data, e.retry_ms) for e in events)
            if ended:
                stream.detach()
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
            await send(
                {"type": "http.response.body", "body": chunk or _KEEPALIVE, "more_body": True}
            )
            events, ended = _drain_ready(stream)
            if not events and not ended:
                with trio.move_on_after(keepalive):
                    if not await _wait_for_news(stream, receive):
                        return
                events, ended = _drain_ready(stream)
    finally:
        stream.detach()
