"""Serving an MCP app on Hypercorn's trio worker, with signals and a graceful drain."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from ._transport._asgi import StreamableHTTPApp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._server._server import McpServer

__all__ = ["serve", "wait_for_shutdown_signal"]

logger = logging.getLogger("trio_mcp_sessions.serve")


async def wait_for_shutdown_signal() -> None:
    """Return at the first SIGINT or SIGTERM (the default shutdown trigger)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s: shutting down", signal.Signals(signum).name)
            return


async def serve(
    target: McpServer | StreamableHTTPApp,
    *,
    bind: str | Sequence[str] = "127.0.0.1:8000",
    graceful_timeout: float = 5.0,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    **app_options: Any,
) -> None:
    """Serve an MCP server over Streamable HTTP until SIGINT/SIGTERM (or *shutdown_trigger*).

    Shutdown is graceful: new sessions are refused, SSE responses end with a
    ``retry`` hint so clients reconnect later, in-flight requests get
    *graceful_timeout* seconds, then everything is cancelled and every session
    closes with reason ``shutdown``.

    Use with ``nursery.start`` to learn the bound URLs (port 0 works)::

        urls = await nursery.start(partial(serve, server, bind="127.0.0.1:0"))

    Args:
        target: An :class:`McpServer` (wrapped in a :class:`StreamableHTTPApp`
            built from *app_options*) or a ready app.
        bind: Address(es) as ``host:port``; loopback by default.
        graceful_timeout: Seconds in-flight requests get after shutdown starts.
        shutdown_trigger: Returns when the server should stop; the default
            waits for SIGINT or SIGTERM (main thread only).
        config: A Hypercorn :class:`~hypercorn.config.Config` to start from.
        **app_options: Passed to :class:`StreamableHTTPApp` (``path``,
            ``limits``, ``reply_mode``, ``event_store``, ``host_policy``, ...).
    """
    if isinstance(target, StreamableHTTPApp):
        if app_options:
            raise TypeError("app options are for an McpServer target; configure the app instead")
        app = target
    else:
        app = StreamableHTTPApp(target, **app_options)
    cfg = config or Config()
    cfg.bind = [bind] if isinstance(bind, str) else list(bind)
    cfg.graceful_timeout = graceful_timeout
    if config is None:
        cfg.accesslog = None
        # Through logging, so the application's configuration decides (no duplicates).
        cfg.errorlog = logging.getLogger("hypercorn.error")
    trigger = shutdown_trigger or wait_for_shutdown_signal

    async def shutdown() -> None:
        await trigger()
        # Hypercorn only tells the app about shutdown after connections are
        # cut; this is our chance to end streams with a reconnect hint first.
        app.begin_drain()

    await hypercorn_serve(app, cfg, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]
