"""Pins the public API: what `import trio_mcp_sessions` offers, and nothing private."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import inspect

import trio_mcp_sessions

PUBLIC = {
    "BoundedSessionManager",
    "CapabilityNotSupported",
    "ClientInfo",
    "ClientRequestError",
    "CloseReason",
    "Context",
    "EventStore",
    "EventStream",
    "EventsPurged",
    "EvictionPolicy",
    "HostPolicy",
    "InMemoryEventStore",
    "InMemorySessionStore",
    "InputLimits",
    "LATEST_PROTOCOL_VERSION",
    "ManagerStatistics",
    "McpError",
    "McpServer",
    "RateLimit",
    "RateLimited",
    "RedisEventStore",
    "RedisRateLimiter",
    "RedisSessionStore",
    "RequestInfo",
    "RestoreOutcome",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "ServiceUnavailable",
    "SessionError",
    "SessionInfo",
    "SessionLimits",
    "SessionManager",
    "SessionNotFound",
    "SessionRecord",
    "SessionStateUpdates",
    "SessionStore",
    "SharedRateLimiter",
    "StoreGuardStatistics",
    "StoreUnavailable",
    "SqliteEventStore",
    "SqliteSessionStore",
    "SseEvent",
    "StoredEvent",
    "StreamableHTTPApp",
    "TooManyInFlight",
    "TooManySessions",
    "TransportStatistics",
    "ToolError",
    "ToolResult",
    "UnknownEventId",
    "audio_content",
    "embedded_resource",
    "image_content",
    "open_redis",
    "resource_link",
    "serve",
    "text_content",
    "wait_for_shutdown_signal",
}


def test_public_names_are_exactly_the_pinned_ones() -> None:
    names = {name for name in dir(trio_mcp_sessions) if not name.startswith("_")}
    assert names == PUBLIC


def test_public_objects_present_themselves_as_public() -> None:
    for name in PUBLIC:
        obj = getattr(trio_mcp_sessions, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "trio_mcp_sessions", name


def test_reexports_use_the_redundant_alias_form() -> None:
    source = inspect.getsource(trio_mcp_sessions)
    for name in PUBLIC:
        assert f"import {name} as {name}" in source, name


def test_errors_share_one_base() -> None:
    for name in (
        "SessionNotFound",
        "ServiceUnavailable",
        "TooManySessions",
        "TooManyInFlight",
        "RateLimited",
        "EventsPurged",
        "UnknownEventId",
        "StoreUnavailable",
    ):
        assert issubclass(getattr(trio_mcp_sessions, name), trio_mcp_sessions.SessionError)


def test_version_and_typed_marker() -> None:
    assert trio_mcp_sessions.__version__
    spec = importlib.util.find_spec("trio_mcp_sessions")
    assert spec is not None
    assert spec.origin is not None
    assert (importlib.resources.files("trio_mcp_sessions") / "py.typed").is_file()
