"""Pins the public API: what `import trio_mcp_sessions` offers, and nothing private."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import importlib.util
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import trio_mcp_sessions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PUBLIC = {
    "AppArguments",
    "AuthStatistics",
    "InvalidToken",
    "ResourceServer",
    "RunnableVerifier",
    "TokenVerifier",
    "VerifiedToken",
    "VerifierUnavailable",
    "BoundedSessionManager",
    "Budget",
    "CacheHint",
    "CallBudgetStatistics",
    "CallLimits",
    "CapabilityNotSupported",
    "ChangeRelay",
    "ClientInfo",
    "ClientRequestError",
    "CloseReason",
    "Context",
    "ErrorResponse",
    "EventStore",
    "EventStream",
    "EventsPurged",
    "EvictionPolicy",
    "HandleBackend",
    "HandleCreated",
    "HandleError",
    "HandleLimitReached",
    "HandleLimits",
    "HandleNotFound",
    "HandlePolicy",
    "HandleStatistics",
    "HandleStore",
    "HostPolicy",
    "InMemoryHandleBackend",
    "InMemoryEventStore",
    "InMemorySessionStore",
    "InflightStatistics",
    "InputLimits",
    "InputRequest",
    "InvalidRequestState",
    "KeyedLimit",
    "LATEST_PROTOCOL_VERSION",
    "ListenLimits",
    "ListenPolicy",
    "ManagerStatistics",
    "McpError",
    "McpHeader",
    "McpServer",
    "Message",
    "Notification",
    "OpenedRequestState",
    "Peer",
    "ProtocolError",
    "RateLimit",
    "RateLimited",
    "RedisBroadcast",
    "RedisBroadcastStatistics",
    "RedisEventStore",
    "RedisHandleBackend",
    "RedisRateLimiter",
    "RedisSessionStore",
    "ReplyMode",
    "Request",
    "RequestId",
    "RequestInfo",
    "RequestStateBinding",
    "RequestStateReason",
    "RequestStateCodec",
    "Response",
    "RestoreOutcome",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "ServerBusy",
    "ServerOptions",
    "ServiceUnavailable",
    "SessionError",
    "SessionInfo",
    "SessionLimits",
    "SessionManager",
    "SessionNotFound",
    "SessionRecord",
    "SessionStateUpdates",
    "SessionStatistics",
    "SessionStore",
    "SharedCallLimiter",
    "SharedRateLimiter",
    "StoreGuardStatistics",
    "StoreUnavailable",
    "SqliteEventStore",
    "SqliteHandleBackend",
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
    "UsedStates",
    "UsedStatesStatistics",
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
    names = {
        name
        for name in dir(trio_mcp_sessions)
        if not name.startswith("_") and not inspect.ismodule(getattr(trio_mcp_sessions, name))
    }
    assert names == PUBLIC


def test_the_testing_module_is_public_and_pinned() -> None:
    import trio_mcp_sessions.testing as testing

    assert set(testing.__all__) == {"McpTestClient", "TestResponse", "open_test_client"}
    for name in testing.__all__:
        assert getattr(testing, name).__doc__, name


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
        "ServerBusy",
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


PACKAGE = Path(trio_mcp_sessions.__file__).parent
#: Private aliases of standard types that public signatures may use: ASGI's
#: scope, receive and send are plain mappings and callables, JSONObject a dict.
STANDARD_ALIASES = {"Scope", "Receive", "Send", "ASGIMessage", "JSONObject"}


def _private_type_names() -> set[str]:
    """Classes and type aliases defined in the package that are not public."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                names.add(node.name)
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and "TypeAlias" in ast.unparse(node.annotation)
            ):
                names.add(node.target.id)
    return names - PUBLIC - STANDARD_ALIASES


def _public_callables() -> Iterator[tuple[str, Callable[..., object]]]:
    """Every public function, method and property getter, except deprecated ones.

    A deprecated alias keeps its old signature (that is the point of it).
    """
    for name in sorted(PUBLIC):
        obj = getattr(trio_mcp_sessions, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(member, property) and member.fget is not None:
                    member = member.fget
                if inspect.isfunction(member) and not (member.__doc__ or "").startswith(
                    "Deprecated"
                ):
                    yield f"{name}.{attr}", member


def test_public_signatures_use_only_public_types() -> None:
    private = _private_type_names()
    found: list[str] = []
    for where, fn in _public_callables():
        signature = inspect.signature(fn, eval_str=False)
        annotations = [p.annotation for p in signature.parameters.values()]
        annotations.append(signature.return_annotation)
        for annotation in annotations:
            if not isinstance(annotation, str):
                continue
            names = {
                n.id
                for n in ast.walk(ast.parse(annotation, mode="eval"))
                if isinstance(n, ast.Name)
            }
            found += [f"{where}: {n}" for n in sorted(names & private)]
    assert not found, "private types in public signatures:\n" + "\n".join(found)


def test_the_manager_and_the_peer_document_every_public_member() -> None:
    """``help()`` explains them: the manager's protocol methods take the protocol's words."""
    undocumented = [
        where
        for where, fn in _public_callables()
        if where.split(".")[0] in {"BoundedSessionManager", "Peer", "SessionManager"}
        and where.split(".")[-1] != "__init__"
        and not fn.__doc__
    ]
    assert not undocumented
