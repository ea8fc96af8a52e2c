"""An app built inside the ASGI server's trio run, for what must live in a nursery.

``hypercorn --worker-class trio --workers N module:app`` imports ``module``
in each worker before any trio run exists, so an app built at import time
cannot hold a Redis client (coredis opens its pool inside a running task):
:class:`LifespanApp` builds the :class:`StreamableHTTPApp` in each worker's
lifespan, in a nursery that lives until the worker shuts down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, final

import trio

from .._protocol._jsonrpc import SERVER_ERROR
from ._answers import _HTTPError
from ._replies import _send_simple

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._asgi import StreamableHTTPApp
    from ._replies import Receive, Scope, Send

__all__ = ["LifespanApp"]

logger = logging.getLogger("trio_mcp_sessions")


@final
class LifespanApp:
    """An ASGI app whose :class:`StreamableHTTPApp` is built in the lifespan, once per worker.

    *build* gets a nursery that lives as long as the worker (open Redis
    there, with :func:`open_redis`) and returns the app; the app's own
    lifespan (its session manager, its drain on shutdown) then runs as
    usual, and the nursery closes after it::

        async def build(nursery: trio.Nursery) -> StreamableHTTPApp:
            redis = await open_redis("redis://redis.internal:6379/0", nursery)
            return StreamableHTTPApp(server, session_store=RedisSessionStore(redis))

        app = LifespanApp(build)  # hypercorn -k trio -w 4 weather:app

    A *build* that raises fails the startup (the server reports it and
    stops); a request that arrives before the app is built (an ASGI server
    without lifespan) gets 503.

    Args:
        build: ``async fn(nursery) -> StreamableHTTPApp``.
    """

    def __init__(self, build: Callable[[trio.Nursery], Awaitable[StreamableHTTPApp]]) -> None:
        self._build = build
        self._app: StreamableHTTPApp | None = None

    @property
    def app(self) -> StreamableHTTPApp | None:
        """The app once the lifespan built it (its statistics, its manager); else ``None``."""
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self._app is not None:
            await self._app(scope, receive, send)
        elif scope["type"] == "http":
            error = _HTTPError(503, SERVER_ERROR, "Service Unavailable: the server is starting")
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
            await _send_simple(send, error.status, error.body(), headers)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        startup = await receive()
        if startup["type"] != "lifespan.startup":
            return
        given = False

        async def replay() -> Any:
            """The startup message once more, for the app's own lifespan; then the server's."""
            nonlocal given
            if not given:
                given = True
                return startup
            return await receive()

        async with trio.open_nursery() as nursery:
            try:
                app = await self._build(nursery)
            except Exception as exc:
                logger.exception("building the app failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                nursery.cancel_scope.cancel()
                return
            self._app = app
            await app(scope, replay, send)  # startup, serving, shutdown: the app's own
            nursery.cancel_scope.cancel()  # then what build opened (the Redis client)
