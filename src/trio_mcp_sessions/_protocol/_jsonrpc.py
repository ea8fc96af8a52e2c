"""JSON-RPC 2.0 framing for MCP, sans-IO.

Nothing here touches a socket, trio or Hypercorn: bytes go in, typed messages
come out, and every malformed input becomes a :class:`ProtocolError` that
carries the JSON-RPC error code *and* the HTTP status the transport should
answer with (in the spirit of h11's ``error_status_hint``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "ErrorResponse",
    "Message",
    "Notification",
    "ProtocolError",
    "Request",
    "RequestId",
    "Response",
    "decode_body",
    "encode",
    "error_body",
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
        return ErrorResponse(self.request_id, self.code, self.message, self.data)


def encode(message: Message | list[Message]) -> bytes:
    """Serialize one message (or a batch) to compact UTF-8 JSON."""
    if isinstance(message, list):
        payload: Any = [m.to_json() for m in message]
    else:
        payload = message.to_json()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(code: int, message: str, request_id: RequestId | None = None) -> bytes:
    """The body of an HTTP error answer: an (often id-less) JSON-RPC error."""
    return encode(ErrorResponse(request_id, code, message))


def _valid_id(value: object) -> bool:
    # bool is an int subclass but not a valid JSON-RPC id; null ids are refused by MCP.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(obj: object) -> Message:
    """Validate one decoded JSON value as a JSON-RPC 2.0 message.

    Raises:
        ProtocolError: ``-32600`` for anything that is not a well-formed
            request, notification or response.
    """
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    raw_id = obj.get("id")
    request_id: RequestId | None = raw_id if _valid_id(raw_id) else None
    if obj.get("jsonrpc") != "2.0":
        raise ProtocolError(
            INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', request_id=request_id
        )
    if "id" in obj and request_id is None:
        raise ProtocolError(
            INVALID_REQUEST, "Invalid Request: id must be a string or an integer, never null"
        )
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise ProtocolError(
                INVALID_REQUEST,
                "Invalid Request: method must be a non-empty string",
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


def decode_body(body: bytes) -> tuple[list[Message], bool]:
    """Decode an HTTP body into messages.

    Returns:
        ``(messages, is_batch)``. Whether a batch is *allowed* depends on the
        negotiated protocol revision, which the caller decides.

    Raises:
        ProtocolError: ``-32700`` when the body is not UTF-8 JSON, ``-32600``
            when it is JSON but not a valid message or batch.
    """
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(PARSE_ERROR, f"Parse error: {exc}") from None
    if isinstance(decoded, list):
        if not decoded:
            raise ProtocolError(INVALID_REQUEST, "Invalid Request: empty batch")
        return [parse_message(item) for item in decoded], True
    return [parse_message(decoded)], False
