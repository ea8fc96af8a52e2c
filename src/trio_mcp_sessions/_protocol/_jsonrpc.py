"""JSON-RPC 2.0 framing for MCP, sans-IO.

Nothing here touches a socket, trio or Hypercorn: bytes go in, typed messages
come out, and every malformed input becomes a :class:`ProtocolError` that
carries the JSON-RPC error code *and* the HTTP status the transport should
answer with (in the spirit of h11's ``error_status_hint``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

__all__ = [
    "DEFAULT_INPUT_LIMITS",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "ErrorResponse",
    "InputLimits",
    "Message",
    "Notification",
    "ProtocolError",
    "Request",
    "RequestId",
    "Response",
    "decode_body",
    "encode",
    "parse_message",
]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: Implementation-defined range (-32000..-32099), as the TypeScript SDK uses it.
SERVER_ERROR: Final = -32000
SESSION_NOT_FOUND: Final = -32001
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
RESOURCE_NOT_FOUND: Final = -32002

RequestId: TypeAlias = str | int
JSONObject: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    """A JSON-RPC request: it has an ``id`` and expects exactly one answer."""

    id: RequestId
    method: str
    params: JSONObject | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {"jsonrpc": "2.0", "id": self.id, "method": self.method}
        if self.params is not None:
            out["params"] = self.params
        return out


@dataclass(frozen=True, slots=True)
class Notification:
    """A JSON-RPC notification: no ``id``, and it is never answered."""

    method: str
    params: JSONObject | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {"jsonrpc": "2.0", "method": self.method}
        if self.params is not None:
            out["params"] = self.params
        return out


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer to a request."""

    id: RequestId
    result: JSONObject = field(default_factory=dict)

    def to_json(self) -> JSONObject:
        return {"jsonrpc": "2.0", "id": self.id, "result": self.result}


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A failed answer; ``id`` is ``None`` only when the request's id was unreadable."""

    id: RequestId | None
    code: int
    message: str
    data: Any = None

    def to_json(self) -> JSONObject:
        error: JSONObject = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        out: JSONObject = {"jsonrpc": "2.0", "error": error}
        if self.id is not None:
            out["id"] = self.id
        return out


Message: TypeAlias = Request | Notification | Response | ErrorResponse


class ProtocolError(Exception):
    """Input that violates JSON-RPC or MCP framing.

    Attributes:
        code: The JSON-RPC error code to answer with.
        message: A human-readable explanation, safe to send to the peer.
        request_id: The offending request's id, when it could be read.
        http_status: The HTTP status the transport should use (400 unless a
            more specific one applies).
        data: Optional structured ``error.data``.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        request_id: RequestId | None = None,
        http_status: int = 400,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status
        self.data = data

    def to_error_response(self) -> ErrorResponse:
        """The JSON-RPC error answer, with the offending request's id when it was read."""
        return ErrorResponse(self.request_id, self.code, self.message, self.data)


@dataclass(frozen=True, slots=True)
class InputLimits:
    """What a client may send in one JSON body, checked by :func:`decode_body`.

    Everything here is refused before a message reaches a session, so a bad
    message costs its sender a 400 and nobody else anything. The defaults are
    far beyond what MCP clients send and far below what hurts a server.

    Attributes:
        max_depth: Nesting of objects and arrays in one message (the message
            object itself is depth 1). Deeper input breaks recursive code
            downstream (serialising a session record, ``repr``).
        max_number_length: Characters of one number literal. Python refuses
            integers over 4,300 digits, and big ones cost quadratic time.
        max_id_length: Characters of a string request id (integer ids are
            bounded by *max_number_length*); ids are echoed and kept in flight.
        max_method_length: Characters of a method name.
        max_client_state_bytes: Size of the ``initialize`` params as JSON:
            they are kept for the session's life and written to its record.
        max_batch_size: Messages in one JSON-RPC batch (2025-03-26): each
            request runs a handler, each notification a task, so a larger
            batch is refused whole, before any of it runs.

    ``NaN``, ``Infinity``, numbers out of the float range and lone UTF-16
    surrogates (``"\\ud800"``, which cannot be encoded back to UTF-8) are
    always refused.
    """

    max_depth: int = 64
    max_number_length: int = 100
    max_id_length: int = 256
    max_method_length: int = 256
    max_client_state_bytes: int = 64 * 1024
    max_batch_size: int = 100

    def __post_init__(self) -> None:
        for name in (
            "max_depth",
            "max_number_length",
            "max_id_length",
            "max_method_length",
            "max_client_state_bytes",
            "max_batch_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        # int() refuses longer digit strings (sys.set_int_max_str_digits).
        int_digits = sys.get_int_max_str_digits() or math.inf
        if self.max_number_length > int_digits:
            raise ValueError(f"max_number_length must be at most {int_digits}")


DEFAULT_INPUT_LIMITS: Final = InputLimits()

#: A UTF-16 surrogate code point; in decoded JSON only a ``\uXXXX`` escape
#: without its pair makes one.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    # isascii() is O(1) on CPython; only non-ASCII strings are searched.
    return not text.isascii() and _SURROGATE.search(text) is not None


def encode(message: Message | list[Message]) -> bytes:
    """Serialize one message (or a batch) to compact UTF-8 JSON.

    Never raises for text: a lone surrogate (which UTF-8 cannot carry) from
    the server's own data falls back to ASCII ``\\uXXXX`` escapes, so a
    handler's odd string can never take its session down.
    """
    if isinstance(message, list):
        payload: Any = [m.to_json() for m in message]
    else:
        payload = message.to_json()
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode("ascii")


def _valid_id(value: object, limits: InputLimits) -> bool:
    # bool is an int subclass but not a valid JSON-RPC id; null ids are refused by MCP.
    if isinstance(value, str):
        return len(value) <= limits.max_id_length and not _has_surrogate(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _tree_problem(root: object, depth: int, limits: InputLimits) -> str | None:
    """Why a decoded value breaks *limits* (too deep, a lone surrogate), or ``None``.

    Iterative, so no input can exhaust the stack; *depth* is that of *root*.
    """
    if isinstance(root, str):
        return "a string holds a lone surrogate" if _has_surrogate(root) else None
    if not isinstance(root, (dict, list)):
        return None
    max_depth = limits.max_depth
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(root, depth)]
    while stack:
        container, level = stack.pop()
        if level > max_depth:
            return f"nesting is deeper than {max_depth}"
        if type(container) is dict:
            for key in container:
                if not key.isascii() and _SURROGATE.search(key):
                    return "a key holds a lone surrogate"
            values: Any = container.values()
        else:
            values = container
        for value in values:
            kind = type(value)
            if kind is str:
                if not value.isascii() and _SURROGATE.search(value):
                    return "a string holds a lone surrogate"
            elif kind is dict or kind is list:
                stack.append((value, level + 1))
    return None


def parse_message(obj: object, limits: InputLimits = DEFAULT_INPUT_LIMITS) -> Message:
    """Validate one decoded JSON value as a JSON-RPC 2.0 message.

    Raises:
        ProtocolError: ``-32600`` for anything that is not a well-formed
            request, notification or response, or that breaks *limits*; the
            id is echoed when it is itself valid.
    """
    return _parse_message(obj, limits, walk=True)


def _parse_message(obj: object, limits: InputLimits, walk: bool) -> Message:
    """:func:`parse_message`; *walk* ``False`` when the caller knows the tree is fine."""
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    raw_id = obj.get("id")
    request_id: RequestId | None = raw_id if _valid_id(raw_id, limits) else None
    if obj.get("jsonrpc") != "2.0":
        raise ProtocolError(
            INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', request_id=request_id
        )
    if "id" in obj and request_id is None:
        if isinstance(raw_id, str):
            raise ProtocolError(
                INVALID_REQUEST,
                f"Invalid Request: id must be at most {limits.max_id_length} characters "
                "of valid Unicode",
            )
        raise ProtocolError(
            INVALID_REQUEST, "Invalid Request: id must be a string or an integer, never null"
        )
    for member in ("params", "result", "error") if walk else ():
        if member in obj:
            problem = _tree_problem(obj[member], 2, limits)
            if problem is not None:
                raise ProtocolError(
                    INVALID_REQUEST, f"Invalid Request: {member}: {problem}", request_id=request_id
                )
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise ProtocolError(
                INVALID_REQUEST,
                "Invalid Request: method must be a non-empty string",
                request_id=request_id,
            )
        if len(method) > limits.max_method_length or _has_surrogate(method):
            raise ProtocolError(
                INVALID_REQUEST,
                f"Invalid Request: method must be at most {limits.max_method_length} "
                "characters of valid Unicode",
                request_id=request_id,
            )
        params = obj.get("params")
        if params is not None and not isinstance(params, dict):
            raise ProtocolError(
                INVALID_REQUEST,
                "Invalid Request: params must be an object",
                request_id=request_id,
            )
        if request_id is None:
            return Notification(method, params)
        return Request(request_id, method, params)
    if request_id is not None and "result" in obj and "error" not in obj:
        result = obj["result"]
        if not isinstance(result, dict):
            raise ProtocolError(
                INVALID_REQUEST, "Invalid Request: result must be an object", request_id=request_id
            )
        return Response(request_id, result)
    if "error" in obj and "result" not in obj:
        error = obj["error"]
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("code"), int)
            or not isinstance(error.get("message"), str)
        ):
            raise ProtocolError(
                INVALID_REQUEST,
                "Invalid Request: error must have an integer code and a string message",
                request_id=request_id,
            )
        return ErrorResponse(request_id, error["code"], error["message"], error.get("data"))
    raise ProtocolError(
        INVALID_REQUEST,
        "Invalid Request: not a request, notification or response",
        request_id=request_id,
    )


class _Refused(ValueError):
    """Raised from inside the JSON parser's hooks: a literal we do not accept."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


@functools.lru_cache(maxsize=8)
def _decoder(max_number_length: int) -> json.JSONDecoder:
    """A JSON decoder whose number hooks enforce *max_number_length* (built once)."""

    def parse_int(text: str) -> int:
        if len(text) > max_number_length:
            raise _Refused(f"a number is longer than {max_number_length} characters")
        return int(text)

    def parse_float(text: str) -> float:
        if len(text) > max_number_length:
            raise _Refused(f"a number is longer than {max_number_length} characters")
        value = float(text)
        if math.isinf(value):
            raise _Refused("a number is out of range")
        return value

    return json.JSONDecoder(
        parse_int=parse_int, parse_float=parse_float, parse_constant=_refuse_constant
    )


def decode_body(
    body: bytes, limits: InputLimits = DEFAULT_INPUT_LIMITS
) -> tuple[list[Message], bool]:
    """Decode an HTTP body into messages, enforcing *limits*.

    Returns:
        ``(messages, is_batch)``. Whether a batch is *allowed* depends on the
        negotiated protocol revision, which the caller decides.

    Raises:
        ProtocolError: ``-32700`` when the body is not JSON (or holds a number
            or constant we refuse), ``-32600`` when it is JSON but not a valid
            message or batch, or breaks *limits*.
    """
    try:
        # Strict UTF-8 (RFC 8259 for JSON between systems): a raw surrogate
        # cannot get through, only a \u escape can make one.
        decoded = _decoder(limits.max_number_length).decode(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, _Refused) as exc:
        raise ProtocolError(PARSE_ERROR, f"Parse error: {exc}") from None
    # Walk the tree only when it could break a limit: no \u escape means no
    # surrogate, and fewer brackets than max_depth means no deep nesting.
    walk = b"\\u" in body or body.count(b"{") + body.count(b"[") >= limits.max_depth
    if isinstance(decoded, list):
        if not decoded:
            raise ProtocolError(INVALID_REQUEST, "Invalid Request: empty batch")
        if len(decoded) > limits.max_batch_size:
            raise ProtocolError(
                INVALID_REQUEST,
                f"Invalid Request: a batch holds at most {limits.max_batch_size} messages, "
                f"this one {len(decoded)}",
            )
        return [_parse_message(item, limits, walk) for item in decoded], True
    return [_parse_message(decoded, limits, walk)], False
