"""The sans-IO protocol core: JSON-RPC framing and lifecycle rules (no sockets, no trio)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from trio_mcp_sessions._protocol._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorResponse,
    Notification,
    ProtocolError,
    Request,
    Response,
    decode_body,
    encode,
)
from trio_mcp_sessions._protocol._lifecycle import (
    LATEST_PROTOCOL_VERSION,
    SessionState,
    SessionStateMachine,
    negotiate_version,
    parse_initialize,
    supports_batches,
    supports_priming,
)

PROTOCOL_DIR = Path(__file__).parent.parent / "src" / "trio_mcp_sessions" / "_protocol"


def test_protocol_core_imports_neither_trio_nor_hypercorn() -> None:
    for path in PROTOCOL_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.level:
                    assert not (node.module or "").startswith(("_server", "_session", "_transport"))
            for name in names:
                assert not name.startswith(("trio", "hypercorn", "h11")), (path.name, name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"}', Request(1, "ping")),
        (b'{"jsonrpc":"2.0","id":"a","method":"x","params":{"k":1}}', Request("a", "x", {"k": 1})),
        (
            b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
            Notification("notifications/initialized"),
        ),
        (b'{"jsonrpc":"2.0","id":3,"result":{}}', Response(3, {})),
        (
            b'{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no","data":[1]}}',
            ErrorResponse(3, -1, "no", [1]),
        ),
        (
            b'{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}',
            Request(123456789012345678901234567890, "ping"),
        ),
    ],
)
def test_valid_messages(raw: bytes, expected: object) -> None:
    messages, is_batch = decode_body(raw)
    assert messages == [expected]
    assert not is_batch
    assert json.loads(encode(messages[0])) == json.loads(raw)


def test_batches_decode_but_the_caller_decides() -> None:
    messages, is_batch = decode_body(
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]'
    )
    assert is_batch
    assert messages == [Request(1, "ping"), Notification("n")]


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        (b"{not json", PARSE_ERROR, None),
        (b"\xff\xfe", PARSE_ERROR, None),
        (b"[]", INVALID_REQUEST, None),
        (b"42", INVALID_REQUEST, None),
        (b'{"id":1,"method":"ping"}', INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":2,"method":""}', INVALID_REQUEST, 2),
        (b'{"jsonrpc":"2.0","id":2,"method":"x","params":[1]}', INVALID_REQUEST, 2),
        (
            b'{"jsonrpc":"2.0","id":2,"result":{},"error":{"code":1,"message":"m"}}',
            INVALID_REQUEST,
            2,
        ),
        (b'{"jsonrpc":"2.0","id":2,"error":{"code":"x","message":"m"}}', INVALID_REQUEST, 2),
        (b'{"jsonrpc":"2.0","id":2,"result":[]}', INVALID_REQUEST, 2),
        (b'{"jsonrpc":"2.0"}', INVALID_REQUEST, None),
        (b"[" * 100_000, PARSE_ERROR, None),
    ],
)
def test_invalid_messages(raw: bytes, code: int, request_id: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_body(raw)
    assert caught.value.code == code
    assert caught.value.request_id == request_id
    assert caught.value.http_status == 400
    error = caught.value
    reply = ErrorResponse(error.request_id, error.code, error.message, error.data)
    body = json.loads(encode(reply))
    assert body["error"]["code"] == code
    assert ("id" in body) == (request_id is not None)


def test_error_response_without_id_has_no_id_member() -> None:
    assert json.loads(encode(ErrorResponse(None, -32000, "x"))) == {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "x"},
    }


@pytest.mark.parametrize(
    ("requested", "negotiated"),
    [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", LATEST_PROTOCOL_VERSION),
        ("2026-07-28", LATEST_PROTOCOL_VERSION),
        ("nonsense", LATEST_PROTOCOL_VERSION),
    ],
)
def test_version_negotiation(requested: str, negotiated: str) -> None:
    assert negotiate_version(requested) == negotiated


def test_revision_features() -> None:
    assert supports_batches("2025-03-26")
    assert not supports_batches("2025-06-18")
    assert not supports_batches("2025-11-25")
    assert supports_priming("2025-11-25")
    assert not supports_priming("2025-06-18")


def test_parse_initialize() -> None:
    request = Request(
        1,
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}},
            "clientInfo": {"name": "c", "version": "1"},
        },
    )
    client = parse_initialize(request)
    assert client.protocol_version == "2025-06-18"
    assert client.has_capability("sampling")
    assert client.has_capability("elicitation", "form")
    assert not client.has_capability("elicitation", "url")
    assert client.has_capability("roots", "listChanged")
    assert not client.has_capability("experimental")


@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"protocolVersion": 5},
        {"protocolVersion": "2025-11-25", "capabilities": []},
        {"protocolVersion": "2025-11-25", "clientInfo": "me"},
    ],
)
def test_parse_initialize_refuses_bad_params(params: dict[str, object] | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_initialize(Request(9, "initialize", params))
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.request_id == 9


def test_state_machine() -> None:
    machine = SessionStateMachine()
    machine.check_request(Request(1, "ping"))  # allowed before initialize
    with pytest.raises(ProtocolError):
        machine.check_request(Request(2, "tools/list"))
    machine.initialize_answered()
    assert machine.state is SessionState.INITIALIZED
    machine.check_request(Request(2, "tools/list"))  # pipelined before initialized: tolerated
    machine.receive_notification("notifications/initialized")
    assert machine.state.value == SessionState.OPERATING.value
    with pytest.raises(ProtocolError) as caught:
        machine.check_request(Request(3, "initialize"))
    assert caught.value.code == INVALID_REQUEST
    ids = {machine.next_outbound_id() for _ in range(100)}
    assert len(ids) == 100
    machine.close()
    with pytest.raises(ProtocolError):
        machine.check_request(Request(4, "ping"))
