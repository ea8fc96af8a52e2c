"""The one exception-to-reply mapping of the server API (sans-IO: no session, no trio run)."""

from __future__ import annotations

import pytest
import trio

from trio_mcp_sessions import (
    CapabilityNotSupported,
    ClientRequestError,
    McpError,
    ProtocolError,
    ToolError,
)
from trio_mcp_sessions._protocol._jsonrpc import INTERNAL_ERROR, INVALID_REQUEST
from trio_mcp_sessions._server._errors import Failure, failure

TIMED_OUT = "Timed out waiting for the client"


@pytest.mark.parametrize(
    ("exc", "handler", "tool"),
    [
        (
            McpError(-32002, "nope", {"uri": "x"}),
            Failure(-32002, "nope", {"uri": "x"}),
            Failure(-32002, "nope", {"uri": "x"}),  # the call itself is wrong
        ),
        (
            ClientRequestError(-1, "declined"),
            Failure(-1, "declined"),
            Failure(-1, "The client refused a request: declined", in_result=True),
        ),
        (
            ProtocolError(INVALID_REQUEST, "bad", data=3),
            Failure(INVALID_REQUEST, "bad", 3),
            Failure(INTERNAL_ERROR, "Error: ProtocolError: bad", in_result=True, log="traceback"),
        ),
        (
            CapabilityNotSupported("no sampling"),
            Failure(INVALID_REQUEST, "no sampling"),
            Failure(INVALID_REQUEST, "no sampling", in_result=True),
        ),
        (
            trio.TooSlowError(),
            Failure(INTERNAL_ERROR, TIMED_OUT),
            Failure(INTERNAL_ERROR, TIMED_OUT, in_result=True),
        ),
        (
            ToolError("broke"),
            Failure(INTERNAL_ERROR, "Internal error", log="traceback"),
            Failure(INTERNAL_ERROR, "broke", in_result=True),
        ),
        (
            TypeError("missing x"),
            Failure(INTERNAL_ERROR, "Internal error", log="traceback"),
            Failure(INTERNAL_ERROR, "Error: missing x", in_result=True, log="warning"),
        ),
        (
            KeyError("k"),
            Failure(INTERNAL_ERROR, "Internal error", log="traceback"),
            Failure(INTERNAL_ERROR, "Error: KeyError: 'k'", in_result=True, log="traceback"),
        ),
    ],
)
def test_failure(exc: Exception, handler: Failure, tool: Failure) -> None:
    assert failure(exc) == handler
    assert failure(exc, tool=True) == tool
