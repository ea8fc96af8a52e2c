"""Serving an MCP app on Hypercorn's trio worker, with signals and a graceful drain.

:func:`serve` runs Hypercorn's own connection handling (``TCPServer``, its
HTTP/1.1 and HTTP/2 protocols, its lifespan), but accepts the connections
itself and hands each over in a thin wrapper that watches its writes.
Hypercorn writes every response under a shielded ``send_all``: a client that
stops reading blocks that write, its connection and, at shutdown, the whole
server, and no cancel scope can end it. Owning the sockets lets us cut a
connection that has made no progress on a write for the write timeout, and
lets shutdown finish within ``graceful_timeout`` whatever the clients do.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import struct
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Unpack, overload

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from ._manager._limits import positive_seconds
from ._transport._asgi import AppArguments, StreamableHTTPApp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._options import ServerOptions
    from ._server._server import McpServer

try:  # Hypercorn's trio worker, piece by piece (0.17 and 0.18 have these).
    from hypercorn.trio.lifespan import Lifespan
    from hypercorn.trio.statsd import StatsdLogger
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app
except ImportError:  # pragma: no cover - another Hypercorn: serve through its public API
    _OWN_WORKER = False
else:
    _OWN_WORKER = True

__all__ = [
    "BACKLOG",
    "BIND",
    "GRACEFUL_TIMEOUT",
    "HEADER_TIMEOUT",
    "serve",
    "wait_for_shutdown_signal",
]

logger = logging.getLogger("trio_mcp_sessions.serve")

#: Where :func:`serve` listens unless told otherwise: loopback only.
BIND: Final = "127.0.0.1:8000"
#: Seconds in-flight requests get after shutdown starts (the default).
GRACEFUL_TIMEOUT: Final = 5.0
#: Connections the kernel may queue for accept (Hypercorn's default is 100): a
#: burst of connects over it has SYNs dropped and retried a second later, so a
#: client sees a slow connect instead of the cap's immediate 503.
BACKLOG: Final = 1024
#: Seconds a connection may take to send a request's headers (the default):
#: Hypercorn's ``keep_alive_timeout`` (its own default, 5 s), whose timer runs
#: from the connection's start, or the end of its last response, until a
#: request's headers are complete; so it is also how long an idle keep-alive
#: connection stays open.
HEADER_TIMEOUT: Final[float] = Config.keep_alive_timeout

#: Seconds before the end of the grace period at which remaining responses
#: are ended with a ``retry`` hint (at most; a quarter of a short grace).
_DRAIN_MARGIN: Final = 0.25
#: Seconds after the grace period at which connections still open are cut.
_CUT_MARGIN: Final = 0.1


async def wait_for_shutdown_signal() -> None:
    """Return at the first SIGINT or SIGTERM (the default shutdown trigger)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s: shutting down", signal.Signals(signum).name)
            return


#: Bytes written per step of a large write: progress is measured per step,
#: so a slow reader that keeps reading is never taken for a stalled one.
_WRITE_STEP: Final = 64 * 1024


class _WatchedStream(trio.abc.HalfCloseableStream):
    """A connection's socket stream that knows since when its current write has waited."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        #: What Hypercorn reads to tell the peer's address.
        self.socket = stream.socket
        #: When the current write step began (``None``: not writing).
        self.writing_since: float | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            if len(view) <= _WRITE_STEP:
                self.writing_since = trio.current_time()
                await self._stream.send_all(view)
                return
            for start in range(0, len(view), _WRITE_STEP):
                self.writing_since = trio.current_time()
                await self._stream.send_all(view[start : start + _WRITE_STEP])
        finally:
            self.writing_since = None

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _WatchedListener(trio.abc.Listener[_WatchedStream]):
    def __init__(self, listener: trio.SocketListener) -> None:
        self._listener = listener

    async def accept(self) -> _WatchedStream:
        return _WatchedStream(await self._listener.accept())

    async def aclose(self) -> None:
        await self._listener.aclose()


class Connections:
    """The open connections of one :func:`serve`, by peer address, so one can be cut.

    Cutting resets the connection (``SO_LINGER`` 0, then ``shutdown``): a
    write blocked on it, even a shielded one, fails at once, and the kernel
    frees the unsent bytes instead of keeping them for an orphaned socket.
    """

    __slots__ = ("_streams", "cut")

    def __init__(self) -> None:
        self._streams: dict[tuple[str, int], _WatchedStream] = {}
        #: Connections cut since start.
        self.cut = 0

    def add(self, stream: _WatchedStream) -> tuple[str, int] | None:
        """Track *stream*; its peer address (``None``: untracked, e.g. a Unix socket)."""
        try:
            peer: tuple[str, int] | None = parse_socket_addr(
                stream.socket.family, stream.socket.getpeername()
            )
        except OSError:
            return None
        if peer is not None:
            self._streams[peer] = stream
        return peer

    def discard(self, peer: tuple[str, int] | None) -> None:
        if peer is not None:
            self._streams.pop(peer, None)

    def __len__(self) -> int:
        return len(self._streams)

    def stalled(self, now: float, timeout: float) -> list[tuple[str, int]]:
        """Peers whose current write step has waited *timeout* seconds or more."""
        return [
            peer
            for peer, stream in self._streams.items()
            if stream.writing_since is not None and now - stream.writing_since >= timeout
        ]

    def cut_connection(self, peer: tuple[str, int] | None) -> bool:
        """Reset the connection of *peer*; ``False`` when there is none."""
        stream = self._streams.pop(peer, None) if peer is not None else None
        if stream is None:
            return False
        sock = stream.socket
        with contextlib.suppress(OSError):  # a reset frees the unsent bytes at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):  # already gone
            sock.shutdown(socket.SHUT_RDWR)
        self.cut += 1
        return True

    def cut_all(self) -> int:
        """Reset every open connection; how many there were."""
        peers = list(self._streams)
        for peer in peers:
            self.cut_connection(peer)
        return len(peers)


async def _watch_writes(connections: Connections, timeout: float) -> None:
    """Cut the connections whose write has made no progress for *timeout* seconds."""
    while True:
        await trio.sleep(timeout / 4)
        for peer in connections.stalled(trio.current_time(), timeout):
            connections.cut_connection(peer)
            logger.warning(
                "cut the connection of %s: no progress on a write for %s s "
                "(the client stopped reading)",
                peer,
                timeout,
            )


async def _finish_drain(
    app: StreamableHTTPApp, connections: Connections | None, grace: float
) -> None:
    """End what is left of the grace period: hints first, then cut what still hangs on."""
    margin = min(_DRAIN_MARGIN, grace / 4)
    await trio.sleep(grace - margin)
    app.finish_drain()
    if connections is None:
        return
    await trio.sleep(margin + _CUT_MARGIN)
    if cut := connections.cut_all():
        logger.warning("cut %d connections still open after the grace period", cut)


async def _worker_serve(
    app: StreamableHTTPApp,
    config: Config,
    *,
    connections: Connections,
    on_shutdown: Callable[[trio.Nursery], None],
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]],
) -> None:
    """Hypercorn's trio ``worker_serve``, accepting connections itself (see the module doc)."""
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    max_requests = None
    if config.max_requests is not None:  # worker recycling, as Hypercorn's worker does it
        max_requests = config.max_requests + random.randint(0, config.max_requests_jitter)
    context = WorkerContext(max_requests)

    async def handle(stream: _WatchedStream | trio.SSLStream[_WatchedStream]) -> None:
        watched = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        peer = connections.add(watched)
        try:
            await TCPServer(
                wrapped,
                config,
                context,
                ConnectionState(lifespan_state.copy()),
                stream,  # type: ignore[arg-type]  # it reads .socket, or .transport_stream.socket
            )
        finally:
            connections.discard(peer)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        lifespan_nursery.start_soon(_watch_writes, connections, app.write_timeout)
        async with trio.open_nursery() as server_nursery:
            sockets = config.create_sockets()
            ssl_context = config.create_ssl_context()
            listeners: list[trio.abc.Listener[Any]] = []
            binds = []
            for sock, scheme in (
                *((s, "https") for s in sockets.secure_sockets),
                *((s, "http") for s in sockets.insecure_sockets),
            ):
                sock.listen(config.backlog)
                listener: trio.abc.Listener[Any] = _WatchedListener(
                    trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                )
                if scheme == "https":
                    assert ssl_context is not None  # secure sockets exist only with TLS configured
                    listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
                listeners.append(listener)
                binds.append(f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}")
            for bind in binds:
                await config.log.info(f"Running on {bind} (CTRL + C to quit)")
            task_status.started(binds)
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners, handle, listeners, handler_nursery=server_nursery
                        )
                    )

                    async def stop_accepting_after(wait: Callable[[], Awaitable[object]]) -> None:
                        await wait()
                        accepting.cancel_scope.cancel()  # no new connections

                    accepting.start_soon(stop_accepting_after, shutdown_trigger)
                    accepting.start_soon(stop_accepting_after, context.terminate.wait)
            finally:
                await context.terminated.set()  # idle keep-alive connections close
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
                on_shutdown(lifespan_nursery)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


class _Announcing:
    """Logs where the server listens, and how it stops, as it reports the URLs it is bound to."""

    __slots__ = ("_inner", "_path", "_stops_on")

    def __init__(self, inner: trio.TaskStatus[list[str]], path: str, stops_on: str) -> None:
        self._inner = inner
        self._path = path
        self._stops_on = stops_on

    @overload
    def started(self) -> None: ...
    @overload
    def started(self, value: list[str]) -> None: ...
    def started(self, value: list[str] | None = None) -> None:
        for url in value or ():
            logger.info(
                "serving MCP on %s%s (stops on %s)",
                url,
                self._path,
                self._stops_on,
                extra={"url": f"{url}{self._path}"},
            )
        self._inner.started(value or [])


async def serve(
    target: McpServer | StreamableHTTPApp,
    *,
    options: ServerOptions | None = None,
    bind: str | Sequence[str] = BIND,
    graceful_timeout: float = GRACEFUL_TIMEOUT,
    backlog: int | None = None,
    header_timeout: float | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    **app_arguments: Unpack[AppArguments],
) -> None:
    """Serve an MCP server over Streamable HTTP until SIGINT/SIGTERM (or *shutdown_trigger*).

    Shutdown is a drain within *graceful_timeout*: new requests and sessions
    are refused (503 with ``Retry-After``), GET streams end at once with a
    ``retry`` hint, requests in flight may finish and deliver their answers;
    shortly before the grace period ends every response still open ends with
    a ``retry`` hint, then what is left is cancelled, connections that still
    hang on (a client that stopped reading) are cut, and every session closes
    with reason ``shutdown`` (restorable after a restart, with a session
    store). A response whose reader takes nothing for the write timeout has
    its connection cut too.

    Use with ``nursery.start`` to learn the bound URLs (port 0 works)::

        urls = await nursery.start(partial(serve, server, bind="127.0.0.1:0"))

    Args:
        target: An :class:`McpServer` (wrapped in a :class:`StreamableHTTPApp`
            built from *options* and *app_arguments*) or a ready app.
        options: The app's :class:`ServerOptions` (path, limits, reply mode, ...).
        bind: Address(es) as ``host:port``; loopback by default.
        graceful_timeout: Seconds in-flight requests get after shutdown starts.
        backlog: The listening sockets' accept queue (:data:`BACKLOG` unless
            *config* is given, then its own).
        header_timeout: Seconds a connection may take to send a request's
            headers, or stay idle between requests, before it is closed
            (Hypercorn's ``keep_alive_timeout``); ``None``: *config*'s
            (:data:`HEADER_TIMEOUT` unless set). The body has its own
            deadline (``ServerOptions.body_timeout``).
        shutdown_trigger: Returns when the server should stop; the default
            waits for SIGINT or SIGTERM (main thread only).
        config: A Hypercorn :class:`~hypercorn.config.Config` to start from.
        **app_arguments: The other keyword arguments of
            :class:`StreamableHTTPApp` (:class:`AppArguments`: stores, rate
            limiter, hooks, ``principal``, and the options' fields as
            overrides); an unknown name is a :exc:`TypeError`.
    """
    if unknown := sorted(set(app_arguments) - set(AppArguments.__annotations__)):
        raise TypeError(f"serve() got an unexpected keyword argument {unknown[0]!r}")
    if isinstance(target, StreamableHTTPApp):
        if app_arguments or options is not None:
            raise TypeError("app options are for an McpServer target; configure the app instead")
        app = target
    else:
        app = StreamableHTTPApp(target, options=options, **app_arguments)
    cfg = config or Config()
    cfg.bind = [bind] if isinstance(bind, str) else list(bind)
    cfg.graceful_timeout = graceful_timeout
    if backlog is not None or config is None:
        cfg.backlog = BACKLOG if backlog is None else backlog
    if header_timeout is not None:
        positive_seconds("header_timeout", header_timeout)
        cfg.keep_alive_timeout = header_timeout
    if config is None:
        cfg.accesslog = None
        # Through logging, so the application's configuration decides (no duplicates).
        cfg.errorlog = logging.getLogger("hypercorn.error")
    trigger = shutdown_trigger or wait_for_shutdown_signal
    task_status = _Announcing(
        task_status, app.path, "SIGINT or SIGTERM" if shutdown_trigger is None else "its trigger"
    )
    own_worker = _OWN_WORKER and not cfg.quic_bind
    connections = Connections() if own_worker else None

    def on_shutdown(nursery: trio.Nursery) -> None:
        # Hypercorn only tells the app about shutdown after connections are
        # cut; this is our chance to end streams with a reconnect hint first.
        app.begin_drain()
        nursery.start_soon(_finish_drain, app, connections, cfg.graceful_timeout)

    if connections is None:
        async with trio.open_nursery() as drain_nursery:

            async def shutdown() -> None:
                await trigger()
                on_shutdown(drain_nursery)

            await hypercorn_serve(app, cfg, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]
            drain_nursery.cancel_scope.cancel()
        return
    app._attach_connections(connections)
    try:
        await _worker_serve(
            app,
            cfg,
            connections=connections,
            on_shutdown=on_shutdown,
            shutdown_trigger=trigger,
            task_status=task_status,
        )
    finally:
        app._attach_connections(None)
