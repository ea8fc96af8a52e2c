"""Which era a request belongs to, and the 2026-07-28 validation ladder. Sans-IO.

One endpoint serves both eras of MCP. The handshake era (2025-03-26 to
2025-11-25) has sessions: ``initialize``, ``Mcp-Session-Id``, a GET stream.
2026-07-28 has none: every request carries its version and the client's
capabilities in ``params._meta``, and the server answers it on its own.

:func:`classify_post` and :func:`classify_other` decide per request, body
first with the ``MCP-Protocol-Version`` header as a cross-check (as the
TypeScript SDK v2 and rmcp do). :func:`check_modern` is the ladder a modern
request climbs, in the order the conformance suite requires:

1. ``_meta`` lacks the version or the client's capabilities: -32602;
2. a routing header is missing, duplicated or does not match the body: -32020;
3. the version is not one we serve: -32022 with ``supported``;
4. a method this revision removed: -32601 (HTTP 404).

Each rung raises :class:`ProtocolError` with the HTTP status the transport
answers with. What needs the server (unknown methods, ``Mcp-Param-*`` against
a tool's schema, undeclared capabilities) is checked after dispatch, with
:func:`check_param_headers` and :data:`MISSING_CLIENT_CAPABILITY`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    Message,
    Notification,
    ProtocolError,
    Request,
)
from ._lifecycle import SUPPORTED_PROTOCOL_VERSIONS

__all__ = [
    "ADVERTISED_VERSIONS",
    "HEADER_MISMATCH",
    "META_CLIENT_CAPABILITIES",
    "META_CLIENT_INFO",
    "META_LOG_LEVEL",
    "META_PROTOCOL_VERSION",
    "META_SERVER_INFO",
    "META_SUBSCRIPTION_ID",
    "MISSING_CLIENT_CAPABILITY",
    "MODERN_VERSIONS",
    "REMOVED_METHODS",
    "Era",
    "ModernRequest",
    "RoutingHeaders",
    "check_modern",
    "check_param_headers",
    "classify_other",
    "classify_post",
    "decode_header_value",
    "http_status_for",
    "is_modern_version",
    "param_headers_of",
]

#: The sessionless revisions we serve, newest first.
MODERN_VERSIONS: Final = ("2026-07-28",)
#: Every revision we serve, newest first: what ``server/discover`` lists and what
#: every -32022 answer names as ``supported``, in both eras (one list, so a client
#: never sees two stories).
ADVERTISED_VERSIONS: Final = (*MODERN_VERSIONS, *SUPPORTED_PROTOCOL_VERSIONS)

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"

#: The HTTP headers do not match the body, or a required one is missing or malformed.
HEADER_MISMATCH: Final = -32020
#: The request needs a client capability its ``_meta`` did not declare.
MISSING_CLIENT_CAPABILITY: Final = -32021

#: Methods of the handshake era that 2026-07-28 removed: "method not found" there.
REMOVED_METHODS: Final = frozenset(
    {
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "notifications/initialized",
    }
)
#: Methods whose ``Mcp-Name`` header mirrors ``params.name`` / ``params.uri``.
_NAMED: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_SENTINEL_START: Final = "=?base64?"
_SENTINEL_END: Final = "?="
#: JavaScript's safe integers: what an ``x-mcp-header`` integer may be.
_MAX_SAFE_INTEGER: Final = 2**53 - 1


class Era(enum.Enum):
    """Which rules serve a request."""

    SESSION = "session"
    """2025-03-26 to 2025-11-25: ``initialize``, ``Mcp-Session-Id``, GET streams."""
    MODERN = "modern"
    """2026-07-28 and later: no sessions, everything per request."""


def is_modern_version(version: str) -> bool:
    """A version that is not one of the handshake era's names a sessionless revision.

    Unknown versions count as modern: a client that names one must get the
    modern ladder's answer (-32602 or -32022 with our list), not a session.
    """
    return version not in SUPPORTED_PROTOCOL_VERSIONS


def _claimed_version(message: Request | Notification) -> object:
    params = message.params
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return None
    return meta.get(META_PROTOCOL_VERSION)


def classify_post(
    messages: Sequence[Message], header_version: str | None, *, has_session: bool = False
) -> Era:
    """The era of a POST body, already parsed into *messages*.

    A ``_meta`` version claim selects the modern era, even on ``initialize``
    (which then gets -32601) and whatever ``Mcp-Session-Id`` says. Without a
    claim, a request outside a session (*has_session*: it carries a session
    id) whose header names a modern or an unknown version is modern too (the
    ladder answers -32602, "missing ``_meta``"). Everything else is the
    handshake era, served exactly as before: batches, posted responses,
    ``initialize``, and all session traffic, where an unknown header version
    is still answered -32022.
    """
    if len(messages) == 1 and isinstance(messages[0], (Request, Notification)):
        if _claimed_version(messages[0]) is not None:
            return Era.MODERN
    elif any(
        isinstance(m, (Request, Notification)) and _claimed_version(m) is not None for m in messages
    ):
        return Era.MODERN  # a batch claiming the new revision: the ladder refuses it
    if not has_session and header_version is not None and is_modern_version(header_version):
        return Era.MODERN
    return Era.SESSION


def classify_other(header_version: str | None, *, has_session: bool = False) -> Era:
    """The era of a GET or DELETE: modern (405) when its header says so, outside a session."""
    if not has_session and header_version is not None and is_modern_version(header_version):
        return Era.MODERN
    return Era.SESSION


@dataclass(frozen=True, slots=True)
class RoutingHeaders:
    """The headers that mirror a modern request's body, as the client sent them.

    Attributes:
        protocol_version: ``MCP-Protocol-Version``.
        method: ``Mcp-Method``.
        name: ``Mcp-Name`` (still encoded; :func:`decode_header_value` decodes).
        params: ``Mcp-Param-*`` values by lower-cased name (after the prefix).
        duplicated: Lower-cased names of routing headers sent more than once.
    """

    protocol_version: str | None = None
    method: str | None = None
    name: str | None = None
    params: Mapping[str, str] | None = None
    duplicated: frozenset[str] = frozenset()

    @classmethod
    def from_asgi(cls, headers: Sequence[tuple[bytes, bytes]]) -> RoutingHeaders:
        """Pick the routing headers out of an ASGI header list (names are lower case there)."""
        seen: dict[str, str] = {}
        params: dict[str, str] = {}
        duplicated: set[str] = set()
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").lower()
            if name not in ("mcp-protocol-version", "mcp-method", "mcp-name") and not (
                name.startswith("mcp-param-")
            ):
                continue
            value = raw_value.decode("latin-1")
            if name in seen:
                duplicated.add(name)
            seen[name] = value
            if name.startswith("mcp-param-"):
                params[name[len("mcp-param-") :]] = value
        return cls(
            protocol_version=_trim(seen.get("mcp-protocol-version")),
            method=_trim(seen.get("mcp-method")),
            name=_trim(seen.get("mcp-name")),
            params=params,
            duplicated=frozenset(duplicated),
        )


def _trim(value: str | None) -> str | None:
    # RFC 9110 §5.5: optional whitespace around a field value is not part of it.
    return value.strip(" \t") if value is not None else None


def _valid_field_value(value: str) -> bool:
    """RFC 9110 field-value characters: visible ASCII, space and tab."""
    return all(ch == "\t" or " " <= ch <= "~" for ch in value)


def decode_header_value(value: str) -> str | None:
    """A header value as text: the Base64 sentinel form decoded; ``None`` if invalid.

    ``=?base64?...?=`` (markers exactly so, lower case) carries UTF-8 in
    standard Base64 with padding; anything else is the literal value, which
    must be visible ASCII, space or tab.
    """
    if not _valid_field_value(value):
        return None
    if (
        value.startswith(_SENTINEL_START)
        and value.endswith(_SENTINEL_END)
        and len(value) >= len(_SENTINEL_START) + len(_SENTINEL_END)
    ):
        encoded = value[len(_SENTINEL_START) : -len(_SENTINEL_END)]
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    return value


@dataclass(frozen=True, slots=True)
class ModernRequest:
    """A request that passed the ladder: what the per-request ``_meta`` declared.

    Attributes:
        message: The request (or notification) itself.
        protocol_version: One of :data:`MODERN_VERSIONS`.
        client_capabilities: The client's capabilities for this request.
        client_info: ``{name, version, ...}`` when the client sent it (optional).
        log_level: The least severe ``notifications/message`` level wanted on
            this request's stream; ``None``: send none.
    """

    message: Request | Notification
    protocol_version: str
    client_capabilities: Mapping[str, Any]
    client_info: Mapping[str, Any] | None
    log_level: str | None


def _mismatch(message: str, request_id: Any) -> ProtocolError:
    return ProtocolError(HEADER_MISMATCH, f"Header mismatch: {message}", request_id=request_id)


def check_modern(
    messages: Sequence[Message],
    headers: RoutingHeaders,
    *,
    supported: Sequence[str] = MODERN_VERSIONS,
    advertised: Sequence[str] = ADVERTISED_VERSIONS,
    log_levels: Sequence[str] = (),
) -> ModernRequest:
    """Climb the ladder for one modern POST body; raise :class:`ProtocolError` off it.

    Args:
        messages: The parsed body (a modern body is exactly one message).
        headers: Its routing headers.
        supported: The modern versions served.
        advertised: What a -32022 answer lists as ``supported``.
        log_levels: The valid ``logLevel`` values (empty: any string).
    """
    if len(messages) != 1 or not isinstance(messages[0], (Request, Notification)):
        raise ProtocolError(
            INVALID_REQUEST,
            "Invalid Request: a 2026-07-28 request is one JSON-RPC request, "
            "not a batch or a response",
        )
    message = messages[0]
    request_id = message.id if isinstance(message, Request) else None
    params = message.params if isinstance(message.params, dict) else {}
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise ProtocolError(
            INVALID_PARAMS,
            "Invalid params: _meta with the protocol version and client capabilities is required",
            request_id=request_id,
        )
    version = meta.get(META_PROTOCOL_VERSION)
    capabilities = meta.get(META_CLIENT_CAPABILITIES)
    if not isinstance(version, str) or not isinstance(capabilities, dict):
        missing = (
            META_PROTOCOL_VERSION if not isinstance(version, str) else META_CLIENT_CAPABILITIES
        )
        raise ProtocolError(
            INVALID_PARAMS, f"Invalid params: _meta[{missing!r}] is required", request_id=request_id
        )
    client_info = meta.get(META_CLIENT_INFO)
    if client_info is not None and not isinstance(client_info, dict):
        raise ProtocolError(
            INVALID_PARAMS,
            f"Invalid params: _meta[{META_CLIENT_INFO!r}] must be an object",
            request_id=request_id,
        )
    log_level = meta.get(META_LOG_LEVEL)
    if log_level is not None and (
        not isinstance(log_level, str) or (log_levels and log_level not in log_levels)
    ):
        raise ProtocolError(
            INVALID_PARAMS,
            f"Invalid params: unknown _meta[{META_LOG_LEVEL!r}] {log_level!r}",
            request_id=request_id,
        )
    # Rung 2: the routing headers mirror the body exactly.
    if headers.duplicated:
        raise _mismatch(f"{min(headers.duplicated)} was sent more than once", request_id)
    if headers.protocol_version is None:
        raise _mismatch("MCP-Protocol-Version is required", request_id)
    if headers.protocol_version != version:
        raise _mismatch(
            f"MCP-Protocol-Version {headers.protocol_version!r} does not match "
            f"the body's {version!r}",
            request_id,
        )
    if isinstance(message, Request):
        if headers.method is None:
            raise _mismatch("Mcp-Method is required", request_id)
        if headers.method != message.method:
            raise _mismatch(
                f"Mcp-Method {headers.method!r} does not match the body's {message.method!r}",
                request_id,
            )
        field_name = _NAMED.get(message.method)
        if field_name is not None:
            _check_name(headers.name, params.get(field_name), request_id)
    elif headers.method is not None and headers.method != message.method:
        raise _mismatch(
            f"Mcp-Method {headers.method!r} does not match the body's {message.method!r}",
            request_id,
        )
    # Rung 3: a version we serve.
    if version not in supported:
        raise ProtocolError(
            UNSUPPORTED_PROTOCOL_VERSION,
            f"Unsupported protocol version {version[:64]!r}",
            request_id=request_id,
            data={"supported": list(advertised), "requested": version},
        )
    # Rung 4: what this revision removed is "not found", whoever serves it.
    if message.method in REMOVED_METHODS:
        raise ProtocolError(
            METHOD_NOT_FOUND,
            f"Method not found: {message.method} (removed in {version})",
            request_id=request_id,
            http_status=404,
        )
    return ModernRequest(message, version, capabilities, client_info, log_level)


def _check_name(header: str | None, body: object, request_id: Any) -> None:
    if header is None:
        raise _mismatch("Mcp-Name is required", request_id)
    decoded = decode_header_value(header)
    if decoded is None:
        raise _mismatch("Mcp-Name is not a valid header value", request_id)
    if decoded != body:
        raise _mismatch(f"Mcp-Name {decoded[:128]!r} does not match the body", request_id)


def http_status_for(code: int) -> int:
    """The HTTP status of a modern JSON-RPC error answered before any stream began."""
    if code == METHOD_NOT_FOUND:
        return 404
    if code in (
        -32700,
        INVALID_REQUEST,
        INVALID_PARAMS,
        HEADER_MISMATCH,
        MISSING_CLIENT_CAPABILITY,
        UNSUPPORTED_PROTOCOL_VERSION,
    ):
        return 400
    return 200


def param_headers_of(schema: Mapping[str, Any]) -> dict[tuple[str, ...], tuple[str, str]]:
    """A tool schema's ``x-mcp-header`` annotations: ``{path: (header name, type)}``.

    Only properties reachable through ``properties`` keys count (the spec's
    rule). Raises :class:`ValueError` for an annotation the spec forbids, so a
    tool with one is refused when it is registered, not when it is called.
    """
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    names: set[str] = set()

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        properties = node.get("properties")
        if not isinstance(properties, Mapping):
            return
        for key, sub in properties.items():
            if not isinstance(sub, Mapping):
                continue
            header = sub.get("x-mcp-header")
            if header is not None:
                if (
                    not isinstance(header, str)
                    or not header
                    or not all(
                        ch.isascii() and (ch.isalnum() or ch in "!#$%&'*+-.^_`|~") for ch in header
                    )
                ):
                    raise ValueError(f"x-mcp-header {header!r} is not an HTTP token")
                if header.lower() in names:
                    raise ValueError(f"x-mcp-header {header!r} is used twice")
                kind = sub.get("type")
                if kind not in ("string", "integer", "boolean"):
                    raise ValueError(
                        f"x-mcp-header {header!r} is on a {kind!r} parameter; "
                        "only string, integer and boolean ones may carry it"
                    )
                names.add(header.lower())
                found[(*path, key)] = (header, kind)
            walk(sub, (*path, key))

    walk(schema, ())
    return found


def _header_text(value: object, kind: str) -> str | None:
    """A body value as its header text, or ``None`` when no header is expected."""
    if value is None:
        return None
    if kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    return repr(value)  # a type the schema did not allow: never matches a header


def _matches(header: str, body: object, kind: str) -> bool:
    if kind == "integer" and isinstance(body, (int, float)) and not isinstance(body, bool):
        try:
            number = float(header)
        except ValueError:
            return False
        return math.isfinite(number) and abs(number) <= _MAX_SAFE_INTEGER and number == body
    return header == _header_text(body, kind)


def check_param_headers(
    annotations: Mapping[tuple[str, ...], tuple[str, str]],
    arguments: Mapping[str, Any],
    headers: RoutingHeaders,
    request_id: Any,
) -> None:
    """``Mcp-Param-*`` against a ``tools/call``'s arguments; -32020 on any difference.

    A value in the body needs its header; a null or absent value needs none
    (and a header sent anyway must then not claim one).
    """
    sent = headers.params or {}
    for path, (header, kind) in annotations.items():
        value: object = arguments
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        raw = sent.get(header.lower())
        if raw is None:
            if value is not None:
                raise _mismatch(f"Mcp-Param-{header} is required", request_id)
            continue
        decoded = decode_header_value(raw)
        if decoded is None:
            raise _mismatch(f"Mcp-Param-{header} is not a valid header value", request_id)
        if value is None or not _matches(decoded, value, kind):
            raise _mismatch(f"Mcp-Param-{header} does not match the body", request_id)
