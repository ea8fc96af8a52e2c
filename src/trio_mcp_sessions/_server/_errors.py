"""The server API's exceptions, and the one mapping from an exception to what a client sees.

A handler's exception becomes a JSON-RPC error; a tool's becomes an
``isError`` result (MCP reports tool failures inside the result, so the model
can see them), except :class:`McpError`, which says the call itself is wrong.
:func:`failure` holds the cases and their texts for both, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

import trio

from .._protocol._era import MISSING_CLIENT_CAPABILITY
from .._protocol._jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, ProtocolError

__all__ = [
    "CapabilityNotSupported",
    "ClientRequestError",
    "Failure",
    "InputRequired",
    "McpError",
    "MissingClientCapability",
    "ToolError",
    "failure",
]


class McpError(Exception):
    """Raise from a handler to answer with a specific JSON-RPC error.

    Args:
        code: A JSON-RPC error code (for example ``-32602`` or ``-32002``).
        message: Sent to the client as ``error.message``.
        data: Optional ``error.data``.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class ClientRequestError(McpError):
    """The client answered a server-to-client request (sampling, elicitation, roots,
    ping, ...) with a JSON-RPC error.

    Inside a tool, an uncaught one becomes an ``isError`` result (the tool
    failed), not the ``tools/call`` error: the client's code is about its own
    request, not about the call.
    """


class ToolError(Exception):
    """Raise from a tool to return an ``isError: true`` result with this message.

    MCP reports tool failures inside the result, so the model can see them,
    rather than as JSON-RPC errors.
    """


class CapabilityNotSupported(Exception):
    """The client did not declare the capability a server request needs.

    MCP forbids sending, for example, ``sampling/createMessage`` to a client
    that did not declare ``sampling``; we refuse locally instead.
    """


class MissingClientCapability(McpError):
    """A 2026-07-28 request needs a client capability its ``_meta`` did not declare.

    Answered with -32021 and ``data.requiredCapabilities`` (HTTP 400). The
    handshake era's equivalent is :class:`CapabilityNotSupported`.
    """

    def __init__(self, capability: str, sub: str | None = None) -> None:
        required: dict[str, Any] = {capability: {sub: {}} if sub else {}}
        super().__init__(
            MISSING_CLIENT_CAPABILITY,
            f"Missing required client capability: {capability}" + (f".{sub}" if sub else ""),
            {"requiredCapabilities": required},
        )


class InputRequired(Exception):
    """The request needs the client's input first (2026-07-28): not an error.

    Raised inside a handler by :meth:`Context.request_input` at the sessionless
    wire; whoever runs the handler answers an ``InputRequiredResult`` with
    these requests, and the handler runs again when the client retries with
    the answers. Handler code never needs to catch it.

    Attributes:
        requests: ``{key: {"method": ..., "params": ...}}`` still unanswered.
    """

    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        self.requests = requests


@final
@dataclass(frozen=True, slots=True)
class Failure:
    """What one exception from handler code tells the client.

    Attributes:
        code: The JSON-RPC error code (unused for a tool's ``isError`` result).
        message: ``error.message``, or the text of the ``isError`` result.
        data: ``error.data``.
        in_result: A tool failure, answered as an ``isError`` result; false:
            the request fails with a JSON-RPC error.
        log: How the caller logs it: ``"traceback"`` for a bug in handler
            code (the client sees no details of it outside a tool).
    """

    code: int
    message: str
    data: Any = None
    in_result: bool = False
    log: Literal["no", "warning", "traceback"] = "no"


def failure(exc: Exception, *, tool: bool = False) -> Failure:
    """Map *exc*, raised by a request handler (by a tool's function when *tool*)."""
    if isinstance(exc, InputRequired):
        # Never a failure: raised through the tool's result, answered by the runner.
        return Failure(INTERNAL_ERROR, "Input required outside an input-capable request")
    if tool and isinstance(exc, ClientRequestError):
        return Failure(
            exc.code, f"The client refused a request: {exc.message}", exc.data, in_result=True
        )
    if isinstance(exc, McpError) or (not tool and isinstance(exc, ProtocolError)):
        return Failure(exc.code, exc.message, exc.data)
    if isinstance(exc, CapabilityNotSupported):
        return Failure(INVALID_REQUEST, str(exc), in_result=tool)
    if isinstance(exc, trio.TooSlowError):
        return Failure(INTERNAL_ERROR, "Timed out waiting for the client", in_result=tool)
    if not tool:
        return Failure(INTERNAL_ERROR, "Internal error", log="traceback")
    if isinstance(exc, ToolError):
        return Failure(INTERNAL_ERROR, str(exc), in_result=True)
    if isinstance(exc, TypeError):
        # Usually a missing/extra argument under an explicit schema.
        return Failure(INTERNAL_ERROR, f"Error: {exc}", in_result=True, log="warning")
    return Failure(
        INTERNAL_ERROR, f"Error: {type(exc).__name__}: {exc}", in_result=True, log="traceback"
    )
