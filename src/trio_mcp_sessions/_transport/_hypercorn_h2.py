"""Guards for Hypercorn's HTTP/2 protocol: request data for a finished stream, the idle timer.

When an application completes its response before the request body has
arrived (a 413 on ``Content-Length``, any refusal of a GET or DELETE that
carries a body), Hypercorn drops the stream, and the client's next DATA frame
for it raises ``KeyError`` in ``H2Protocol._handle_events``. On the trio
worker that error leaves the connection's task and ends ``serve()`` for
every client (Hypercorn 0.18; upstream pgjones/hypercorn#334 proposes this
same guard). The guard makes the streams table answer an unknown stream id
with a stream that ignores what it is given, as the ``StreamEnded`` branch
already does by catching ``KeyError``; the data is still acknowledged for
connection flow control.

A connection that speaks HTTP/2 with prior knowledge over plain TCP (h2c)
starts in Hypercorn's HTTP/1.1 parser, which takes the connection preface
(``PRI * HTTP/2.0``) for a request and stops the connection's idle timer
(``keep_alive_timeout``, our header deadline) before handing over to HTTP/2;
nothing starts it again until a stream has closed. Such a connection could
then send nothing, or trickle its first request's headers, for ever. The
second guard restarts the timer once an HTTP/2 connection without a stream
has been set up, as Hypercorn does for a TLS one from the start.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["install"]

_MARK: Final = "_trio_mcp_sessions_guarded"


class _GoneStream:
    """Stands in for a stream Hypercorn has already closed: ignores every event."""

    async def handle(self, event: object) -> None:
        return None


_GONE: Final = _GoneStream()


class _Streams(dict[int, Any]):
    """Hypercorn's ``streams`` table; a missing id is a stream that has finished."""

    __slots__ = ()

    def __missing__(self, stream_id: int) -> Any:
        return _GONE


def install() -> None:
    """Guard :class:`hypercorn.protocol.h2.H2Protocol` (idempotent; nothing if absent)."""
    try:
        from hypercorn.protocol.h2 import H2Protocol
    except ImportError:  # pragma: no cover - h2 is a Hypercorn dependency
        return
    if getattr(H2Protocol, _MARK, False):
        return
    original_init = H2Protocol.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.streams = _Streams(self.streams)

    H2Protocol.__init__ = __init__  # type: ignore[method-assign]
    try:
        from hypercorn.events import Updated
    except ImportError:  # pragma: no cover - another Hypercorn
        setattr(H2Protocol, _MARK, True)
        return
    original_initiate = H2Protocol.initiate

    async def initiate(self: Any, *args: Any, **kwargs: Any) -> None:
        await original_initiate(self, *args, **kwargs)
        if self.idle:  # no stream yet (an h2c upgrade already carries one)
            await self.send(Updated(idle=True))

    H2Protocol.initiate = initiate  # type: ignore[method-assign]
    setattr(H2Protocol, _MARK, True)
