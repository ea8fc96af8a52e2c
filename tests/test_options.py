"""ServerOptions: each default lives once, is validated once, and every entry point reads it.

The app, the built-in manager, :func:`serve` and the command line all build
on one :class:`ServerOptions`; their keyword arguments override its fields.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing

from conftest import INIT_HEADERS, initialize_body
from test_manager import INFO
from test_restore import FlakyStore
from trio_mcp_sessions import (
    AppArguments,
    BoundedSessionManager,
    HostPolicy,
    InMemoryEventStore,
    InMemorySessionStore,
    InputLimits,
    McpServer,
    ServerOptions,
    SessionLimits,
    StoreUnavailable,
    StreamableHTTPApp,
    serve,
)
from trio_mcp_sessions._cli import _parser, options_from

if TYPE_CHECKING:
    from conftest import StartServer

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "trio_mcp_sessions"
FIELDS = {f.name for f in dataclasses.fields(ServerOptions)}


def _server() -> McpServer:
    return McpServer("options-tests")


# -- one default, read everywhere ------------------------------------------------------


def test_the_defaults() -> None:
    options = ServerOptions()
    assert (options.path, options.reply_mode, options.max_body_bytes) == ("/mcp", "sse", 4 << 20)
    assert (options.retry_ms, options.metrics_path) == (1000, None)
    assert (options.store_timeout, options.store_failure_threshold) == (2.0, 2)
    assert options.store_probe_after == 5.0
    assert options.limits == SessionLimits()
    assert options.input_limits == InputLimits()
    assert options.host_policy == HostPolicy()


def test_the_app_and_the_manager_start_from_the_defaults() -> None:
    app = StreamableHTTPApp(_server())
    defaults = ServerOptions()
    assert app.options == defaults
    assert (app.path, app.reply_mode, app.max_body_bytes) == (
        defaults.path,
        defaults.reply_mode,
        defaults.max_body_bytes,
    )
    assert (app.retry_ms, app.input_limits, app.host_policy, app.metrics_path) == (
        defaults.retry_ms,
        defaults.input_limits,
        defaults.host_policy,
        defaults.metrics_path,
    )
    assert app.write_timeout == defaults.limits.write_timeout
    for manager in (app.manager, BoundedSessionManager(_server())):
        assert isinstance(manager, BoundedSessionManager)
        assert manager.retry_ms == defaults.retry_ms
        assert manager.store_timeout == defaults.store_timeout
        assert manager.limits == defaults.limits
        assert isinstance(manager.event_store, InMemoryEventStore)


def test_the_command_line_builds_the_default_options() -> None:
    args = _parser().parse_args(["serve", "module:server"])
    assert options_from(args) == ServerOptions()
    defaults = inspect.signature(serve).parameters
    assert args.graceful_timeout == defaults["graceful_timeout"].default


#: Where the app, the manager, serve() and the command line are built.
ENTRY_POINTS = ("_transport/_asgi.py", "_manager/_manager.py", "_serve.py", "_cli.py")


def test_no_entry_point_repeats_an_option_default() -> None:
    # A parameter named like a ServerOptions field defaults to None ("keep the
    # options' value"): its default is ServerOptions', and nobody else's.
    repeated = []
    for name in ENTRY_POINTS:
        for node in ast.walk(ast.parse((PACKAGE / name).read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            with_default = positional[len(positional) - len(args.defaults) :]
            pairs = [
                *zip(with_default, args.defaults, strict=True),
                *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d),
            ]
            repeated += [
                f"{name}:{node.lineno} {arg.arg}={ast.unparse(default)}"
                for arg, default in pairs
                if arg.arg in FIELDS and ast.unparse(default) != "None"
            ]
    assert not repeated, repeated


@pytest.mark.parametrize(
    ("literal", "home"),
    [
        ("4 * 1024 * 1024", "_options.py"),
        ("= 1000", "_options.py"),
        ('"/mcp"', "_options.py"),
        ('"127.0.0.1:8000"', "_serve.py"),
        ("= 5.0", "_serve.py"),
        ("default=STORE_TIMEOUT", None),
        ("default=1000", None),
    ],
)
def test_the_literal_defaults_are_spelled_once(literal: str, home: str | None) -> None:
    places = [
        name
        for name in (*ENTRY_POINTS, "_options.py")
        for _ in range((PACKAGE / name).read_text().count(literal))
    ]
    assert places == ([home] if home else []), f"{literal!r} spelled in {places}"


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"path": 5}, TypeError, "path must be a str"),
        ({"reply_mode": "xml"}, ValueError, "reply_mode must be 'sse' or 'json'"),
        ({"max_body_bytes": 0}, ValueError, "max_body_bytes must be at least 1"),
        ({"max_body_bytes": 1.5}, TypeError, "max_body_bytes must be an int"),
        ({"max_body_bytes": True}, TypeError, "max_body_bytes must be an int"),
        ({"input_limits": {"max_depth": 3}}, TypeError, "input_limits must be an InputLimits"),
        ({"retry_ms": -1}, ValueError, "retry_ms must be at least 0"),
        ({"retry_ms": "1000"}, TypeError, "retry_ms must be an int"),
        ({"limits": None}, TypeError, "limits must be a SessionLimits"),
        ({"store_timeout": 0}, ValueError, "store_timeout must be positive"),
        ({"store_timeout": math.nan}, ValueError, "store_timeout must be positive"),
        ({"store_timeout": "2"}, TypeError, "store_timeout must be a number of seconds"),
        ({"store_failure_threshold": 0}, ValueError, "store_failure_threshold must be at least 1"),
        ({"store_failure_threshold": 2.0}, TypeError, "store_failure_threshold must be an int"),
        ({"store_probe_after": -1}, ValueError, "store_probe_after must be positive"),
        ({"store_probe_after": math.inf}, ValueError, "store_probe_after must be finite"),
        ({"metrics_path": 1}, TypeError, "metrics_path must be a str"),
        ({"metrics_path": "/mcp/"}, ValueError, "metrics_path must differ from path"),
        ({"host_policy": ("localhost",)}, TypeError, "host_policy must be a HostPolicy"),
    ],
)
def test_invalid_options_are_refused_clearly(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ServerOptions(**kwargs)
    # The keyword arguments take the same check (there is no second one).
    if next(iter(kwargs.values())) is not None:
        with pytest.raises(error, match=message):
            StreamableHTTPApp(_server(), **kwargs)


def test_paths_are_normalised() -> None:
    options = ServerOptions(path="api/mcp/", metrics_path="metrics/")
    assert (options.path, options.metrics_path) == ("/api/mcp", "/metrics")
    assert ServerOptions(metrics_path="").metrics_path is None  # "" meant none, as before
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.path = "/other"  # type: ignore[misc]


def test_options_must_be_server_options() -> None:
    with pytest.raises(TypeError, match="options must be a ServerOptions"):
        StreamableHTTPApp(_server(), options={"path": "/x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options must be a ServerOptions"):
        BoundedSessionManager(_server(), options=SessionLimits())  # type: ignore[arg-type]


# -- keywords override options -------------------------------------------------------------


def test_keywords_override_the_options_and_none_keeps_them() -> None:
    base = ServerOptions(path="/a", retry_ms=500, store_timeout=3.0)
    app = StreamableHTTPApp(_server(), options=base, retry_ms=700, store_timeout=None)
    assert app.options == dataclasses.replace(base, retry_ms=700)
    assert (app.path, app.retry_ms) == ("/a", 700)
    manager = app.manager
    assert isinstance(manager, BoundedSessionManager)
    # The app hands its options to the manager it builds.
    assert (manager.retry_ms, manager.store_timeout) == (700, 3.0)
    assert base.retry_ms == 500  # frozen: the caller's options are untouched


def test_the_manager_reads_options_and_its_keywords_override_them() -> None:
    limits = SessionLimits(max_sessions=3)
    options = ServerOptions(retry_ms=250, store_timeout=4.0, limits=limits)
    manager = BoundedSessionManager(_server(), options=options, store_timeout=1.5)
    assert (manager.retry_ms, manager.store_timeout, manager.limits) == (250, 1.5, limits)
    assert BoundedSessionManager(_server(), retry_ms=10).store_timeout == 2.0


async def test_the_manager_takes_the_store_settings_from_the_options(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flaky = FlakyStore(InMemorySessionStore())
    flaky.mode = "fail"
    options = ServerOptions(store_failure_threshold=3, store_probe_after=7.0)
    async with BoundedSessionManager(_server(), options=options, session_store=flaky) as manager:
        for failures in (1, 2, 3):
            with pytest.raises(StoreUnavailable):
                await manager.restore_session("unknown", INFO)
            state = manager.statistics().stores["sessions"].state
            assert state == ("open" if failures == 3 else "closed"), failures
        flaky.mode = "ok"
        await trio.sleep(6.9)  # not yet: still refused at once
        with pytest.raises(StoreUnavailable):
            await manager.restore_session("unknown", INFO)
        assert manager.statistics().stores["sessions"].fast_failures == 1
        await trio.sleep(0.2)  # 7 s after it opened: the next call probes the store
        await manager.restore_session("unknown", INFO)
        assert manager.statistics().stores["sessions"].state == "closed"


def test_one_spelling_for_the_default_event_store() -> None:
    for event_store in ("default", None):
        app = StreamableHTTPApp(_server(), event_store=event_store)
        manager = BoundedSessionManager(_server(), event_store=event_store)
        for built in (app.manager, manager):
            assert isinstance(built, BoundedSessionManager)
            assert isinstance(built.event_store, InMemoryEventStore) is (event_store is not None)
    for fn in (StreamableHTTPApp.__init__, BoundedSessionManager.__init__):
        parameter = inspect.signature(fn).parameters["event_store"]
        assert parameter.default == "default"
        assert "Literal['default']" in str(parameter.annotation).replace('"', "'")


async def test_the_options_shape_the_served_endpoint(start_server: StartServer) -> None:
    app = StreamableHTTPApp(
        _server(), options=ServerOptions(path="/api", max_body_bytes=300, reply_mode="json")
    )
    url = (await start_server(app)).removesuffix("/api")
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.post(f"{url}/mcp", json=initialize_body())).status_code == 404
        r = await http.post(f"{url}/api", json=initialize_body(), headers=INIT_HEADERS)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        big = {**initialize_body(), "padding": "x" * 300}
        r = await http.post(f"{url}/api", json=big, headers=INIT_HEADERS)
        assert r.status_code == 413


# -- serve() and the command line ------------------------------------------------------------


def test_app_arguments_are_the_apps_keywords() -> None:
    parameters = inspect.signature(StreamableHTTPApp.__init__).parameters
    keywords = {n: p.annotation for n, p in parameters.items() if n not in ("self", "server")}
    del keywords["options"]
    declared = {
        name: getattr(annotation, "__forward_arg__", annotation)
        for name, annotation in AppArguments.__annotations__.items()
    }
    assert declared == keywords
    assert set(keywords) >= FIELDS


async def test_serve_refuses_unknown_names_clearly() -> None:
    with pytest.raises(TypeError, match="serve\\(\\) got an unexpected keyword argument 'retry'"):
        await serve(_server(), retry=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="app options are for an McpServer target"):
        await serve(StreamableHTTPApp(_server()), options=ServerOptions())


async def test_serve_builds_the_app_from_options_and_keywords() -> None:
    stop = trio.Event()
    created: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(
                    serve,
                    _server(),
                    options=ServerOptions(path="/served"),
                    on_session_created=lambda session_id, _info: created.append(session_id),
                    retry_ms=10,
                    bind="127.0.0.1:0",
                    shutdown_trigger=stop.wait,
                )
            )
            async with httpx.AsyncClient(timeout=5) as http:
                url = f"{urls[0]}/served"
                r = await http.post(url, json=initialize_body(), headers=INIT_HEADERS)
                assert r.status_code == 200
            assert created == [r.headers["mcp-session-id"]]  # the live arguments arrive too
            stop.set()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--retry-ms", "-1"], "error: retry_ms must be at least 0"),
        (["--max-body-bytes", "0"], "error: max_body_bytes must be at least 1"),
        (["--store-failure-threshold", "0"], "error: store_failure_threshold must be at least 1"),
        (["--store-timeout", "0"], "error: store_timeout must be positive"),
        (["--store-probe-after", "inf"], "error: store_probe_after must be finite"),
        (["--metrics-path", "/mcp"], "error: metrics_path must differ from path"),
        (["--max-batch-size", "0"], "error: max_batch_size"),
    ],
)
def test_the_command_line_maps_invalid_options_to_errors(argv: list[str], message: str) -> None:
    args = _parser().parse_args(["serve", "module:server", *argv])
    with pytest.raises(SystemExit, match=message):
        options_from(args)


def test_the_command_line_passes_every_flag_into_the_options() -> None:
    args = _parser().parse_args(
        [
            "serve",
            "module:server",
            "--path",
            "/x",
            "--reply-mode",
            "json",
            "--max-body-bytes",
            "1234",
            "--retry-ms",
            "20",
            "--store-timeout",
            "0.5",
            "--store-failure-threshold",
            "4",
            "--store-probe-after",
            "9",
            "--metrics-path",
            "/metrics",
            "--max-batch-size",
            "7",
            "--max-sessions",
            "12",
            "--allowed-host",
            "example.com",
        ]
    )
    assert options_from(args) == ServerOptions(
        path="/x",
        reply_mode="json",
        max_body_bytes=1234,
        retry_ms=20,
        store_timeout=0.5,
        store_failure_threshold=4,
        store_probe_after=9.0,
        metrics_path="/metrics",
        input_limits=InputLimits(max_batch_size=7),
        limits=SessionLimits(max_sessions=12),
        host_policy=HostPolicy(("example.com",), None),
    )
