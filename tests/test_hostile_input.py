"""Hostile input: whatever a client sends, a 2xx/4xx with a JSON-RPC body, and nothing left behind.

Bodies and headers are built from the classes of input that used to crash a
request (issue 9, items 1-6): huge numbers, lone surrogates, odd Unicode
digits, deep nesting, wrong types, oversized fields, batches. They drive the
ASGI app in-process (raw ASGI messages, so headers can carry any byte) with a
persistent session store, and every case checks: the status, the JSON-RPC
body, no log record at ERROR or above, no session, slot or task left by the
request, and a session that was live before still answers.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import StartServer, initialize_body
from trio_mcp_sessions import (
    BoundedSessionManager,
    InputLimits,
    McpServer,
    SqliteSessionStore,
    StreamableHTTPApp,
    UnknownEventId,
)
from trio_mcp_sessions._protocol._jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorResponse,
    ProtocolError,
    Request,
    Response,
    decode_body,
    encode,
)
from trio_mcp_sessions._protocol._lifecycle import parse_initialize
from trio_mcp_sessions._session import parse_event_id
from trio_mcp_sessions._transport._http import HostPolicy, split_host, valid_authority
from trio_mcp_sessions.testing import McpTestClient, TestResponse

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LATEST = "2025-11-25"
LEGACY = "2025-03-26"
INVALID_PARAMS = -32602
POST = [
    (b"accept", b"application/json, text/event-stream"),
    (b"content-type", b"application/json"),
]
Headers = list[tuple[bytes, bytes]]


# -- the sans-IO limits ----------------------------------------------------------------


def _message(**fields: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **fields}).encode()


def _raw(text: str) -> bytes:
    return text.encode()


def _refused(body: bytes, limits: InputLimits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_body(body, limits or InputLimits())
    assert info.value.http_status == 400
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        '{"jsonrpc":"2.0","id":' + "9" * 5000 + ',"method":"ping"}',
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":-' + "1" * 101 + "}}",
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":1.' + "0" * 100 + "}}",
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":1e999}}',
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":NaN}}',
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":-Infinity}}',
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":' + "[" * 100_000 + "}}",
    ],
)
def test_numbers_constants_and_runaway_nesting_are_parse_errors(text: str) -> None:
    assert _refused(_raw(text)).code == PARSE_ERROR


def test_number_length_is_configurable() -> None:
    body = _message(id=1, method="ping", params={"n": 10**20})
    assert decode_body(body, InputLimits(max_number_length=21))
    assert _refused(body, InputLimits(max_number_length=20)).code == PARSE_ERROR


@pytest.mark.parametrize(
    ("text", "echoed"),
    [
        ('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', None),
        ('{"jsonrpc":"2.0","id":"' + "x" * 257 + '","method":"ping"}', None),
        ('{"jsonrpc":"2.0","id":7,"method":"x\\udfff"}', 7),
        ('{"jsonrpc":"2.0","id":7,"method":"' + "m" * 257 + '"}', 7),
        ('{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":["\\ud83d"]}}', 7),
        ('{"jsonrpc":"2.0","id":7,"method":"ping","params":{"\\udc00":1}}', 7),
        ('{"jsonrpc":"2.0","id":"r","result":{"x":"\\ud800"}}', "r"),
        ('{"jsonrpc":"2.0","id":"r","error":{"code":1,"message":"\\ud800"}}', "r"),
        ('{"jsonrpc":"2.0","method":"n","params":{"a":"\\ud800"}}', None),
    ],
)
def test_lone_surrogates_and_oversized_ids_are_invalid_requests(text: str, echoed: object) -> None:
    error = _refused(_raw(text))
    assert error.code == INVALID_REQUEST
    assert error.request_id == echoed


def test_a_surrogate_pair_is_fine() -> None:
    (message,), _ = decode_body(_raw('{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"ping"}'))
    assert isinstance(message, Request)
    assert message.id == "\U0001f600"


def test_raw_surrogate_bytes_are_a_parse_error() -> None:
    # UTF-8 cannot carry a surrogate; json.loads would let it through (surrogatepass).
    body = b'{"jsonrpc":"2.0","id":1,"method":"\xed\xa0\x80"}'
    assert _refused(body).code == PARSE_ERROR


def _nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_nesting_limit_counts_from_the_message() -> None:
    limits = InputLimits(max_depth=10)
    # message (1) > params (2) > ... ; params nested 9 deep reaches depth 10.
    assert decode_body(_message(id=1, method="m", params=_nested(9)), limits)
    error = _refused(_message(id=1, method="m", params=_nested(10)), limits)
    assert (error.code, error.request_id) == (INVALID_REQUEST, 1)
    # Lists count as much as objects, and every message of a batch is checked.
    deep_list = {"a": [[[[[[[[[1]]]]]]]]]}
    batch = [_message(id=1, method="m"), _message(id=2, method="m", params=deep_list)]
    assert _refused(b"[" + b",".join(batch) + b"]", limits).code == INVALID_REQUEST


def test_default_depth_refuses_600_deep_capabilities() -> None:
    body = json.dumps(initialize_body(deep=_nested(600))).encode()
    error = _refused(body)
    assert (error.code, error.request_id) == (INVALID_REQUEST, 1)


def test_initialize_params_size_is_bounded() -> None:
    limits = InputLimits(max_client_state_bytes=1000)
    small = Request(1, "initialize", initialize_body()["params"])
    assert parse_initialize(small, limits).protocol_version == LATEST
    big_params = initialize_body(blob={"x": "y" * 1000})["params"]
    with pytest.raises(ProtocolError) as info:
        parse_initialize(Request(1, "initialize", big_params), limits)
    assert (info.value.code, info.value.request_id) == (INVALID_PARAMS, 1)
    # A restore replays what was accepted before: no limit there.
    assert parse_initialize(Request(1, "initialize", big_params)).capabilities


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_depth": 0}, ValueError),
        ({"max_id_length": -1}, ValueError),
        ({"max_method_length": 1.5}, TypeError),
        ({"max_client_state_bytes": True}, TypeError),
        ({"max_number_length": 5000}, ValueError),
    ],
)
def test_invalid_input_limits(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        InputLimits(**kwargs)


def test_app_refuses_an_input_limits_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="InputLimits"):
        StreamableHTTPApp(McpServer("x", "1"), input_limits={"max_depth": 3})  # type: ignore[arg-type]


def test_encode_never_raises_for_a_server_side_surrogate() -> None:
    data = encode(Response("a\ud800", {"text": "b\udfff"}))
    assert data.isascii()
    assert json.loads(data)["result"]["text"] == "b\udfff"
    assert (
        encode(ErrorResponse(1, -1, "ok"))
        == b'{"jsonrpc":"2.0","error":{"code":-1,"message":"ok"},"id":1}'
    )


@pytest.mark.parametrize(
    "host", ["127.0.0.1:\xb2", "127.0.0.1:" + "1" * 5000, "[::1]:\xb9\xb2", "h:123456", "h:"]
)
def test_split_host_never_parses_a_bad_port(host: str) -> None:
    assert split_host(host)[1] is None


@pytest.mark.parametrize(
    ("authority", "valid"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8000", True),
        ("localhost:", True),  # RFC 9110: the port may be empty
        ("[::1]", True),
        ("[::1]:443", True),
        ("example.com:65535", True),
        ("127.0.0.1:\xb2", False),
        ("127.0.0.1:" + "1" * 5000, False),
        ("127.0.0.1:123456", False),
        ("[::1]:\xb9", False),
        ("[::1", False),
        ("[::1]x", False),
        (":80", False),
        ("a:b:c", False),
        ("", False),
        ("exa mple.com", False),
        ("example.com\x00", False),
        ("\u0663.com", False),
    ],
)
def test_valid_authority(authority: str, valid: bool) -> None:
    assert valid_authority(authority) is valid


def test_a_bad_port_never_matches_a_configured_one() -> None:
    policy = HostPolicy(allowed_hosts=("api.example.com:443",))
    assert not policy.host_allowed("api.example.com:\xb3", "10.0.0.1")
    origins = HostPolicy(allowed_origins=("https://app.example.com:443",))
    assert not origins.origin_allowed("https://app.example.com:\xb2", None, "10.0.0.1")


@pytest.mark.parametrize("event_id", ["g1_\xb9\xb2", "g1_" + "1" * 5000, "g1_", "_1", "g1_-1"])
def test_parse_event_id_refuses_odd_digits(event_id: str) -> None:
    with pytest.raises(UnknownEventId):
        parse_event_id(event_id)


# -- the app in-process ----------------------------------------------------------------


def make_server() -> McpServer:
    server = McpServer("hostile", "1.0")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged.

        Args:
            text: What to return.
        """
        return text

    @server.tool()
    def odd() -> str:
        """Return a lone surrogate, which UTF-8 cannot carry."""
        return "\ud800"

    return server


async def asgi_request(
    app: StreamableHTTPApp, method: str, headers: Headers, body: bytes = b""
) -> TestResponse:
    """One request through the test kit, headers as raw bytes; any exception fails the test.

    The body arrives in two chunks, as a network would deliver it; the kit
    fails the test if the app breaks the ASGI protocol (a second response
    start, a body before it, no answer).
    """
    half = len(body) // 2
    client = McpTestClient(app)
    with trio.fail_after(5):
        async with client.stream(method, [body[:half], body[half:]], headers=headers) as response:
            if method != "GET" or response.status != 200:
                return await response.read()
            # A GET that was served opens a stream: the client leaves soon.
            with trio.move_on_after(0.02):
                return await response.read()
            data = [event.json() for event in response.events if event.data]
            return TestResponse(response.status, response.headers, b"", data, response.events)


class _ErrorRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_errors_logged() -> Iterator[None]:
    """Fails if anything logs at ERROR or above (ours, Hypercorn's, anyone's)."""
    recorder = _ErrorRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield
    finally:
        root.removeHandler(recorder)
    assert not recorder.records, [r.getMessage() for r in recorder.records]


@dataclass
class Scene:
    """An app with a running manager, a SQLite session store and one live session."""

    app: StreamableHTTPApp
    session_id: str
    version: str
    next_id: int = field(default=100)

    @property
    def manager(self) -> BoundedSessionManager:
        manager = self.app.manager
        assert isinstance(manager, BoundedSessionManager)
        return manager

    def session_headers(self) -> Headers:
        return [
            *POST,
            (b"mcp-session-id", self.session_id.encode()),
            (b"mcp-protocol-version", self.version.encode()),
        ]

    async def live_session_answers(self) -> None:
        self.next_id += 1
        body = _message(id=self.next_id, method="tools/call", params=_echo_params("still here"))
        answer = await asgi_request(self.app, "POST", self.session_headers(), body)
        assert answer.status == 200, answer
        (reply,) = answer.messages
        assert reply["id"] == self.next_id
        assert reply["result"]["content"][0]["text"] == "still here"


def _echo_params(text: str) -> dict[str, Any]:
    return {"name": "echo", "arguments": {"text": text}}


async def open_scene(
    nursery: trio.Nursery, db: Path, version: str = LATEST, **options: Any
) -> Scene:
    app = StreamableHTTPApp(make_server(), session_store=SqliteSessionStore(db), **options)
    await nursery.start(app.run)
    answer = await asgi_request(app, "POST", POST, json.dumps(initialize_body(version)).encode())
    assert answer.status == 200, answer
    session_id = answer.headers["mcp-session-id"]
    scene = Scene(app, session_id, version)
    notified = await asgi_request(
        app,
        "POST",
        scene.session_headers(),
        _message(method="notifications/initialized"),
    )
    assert notified.status == 202
    return scene


def assert_well_answered(answer: TestResponse, method: str) -> None:
    """A 2xx or 4xx; a JSON-RPC body on everything but 202 and a GET's stream."""
    assert 200 <= answer.status < 500, answer
    if answer.status == 202 or (method == "DELETE" and answer.status == 200):
        assert answer.body == b""
        return
    messages = answer.messages
    assert messages or (method == "GET" and answer.status == 200), answer
    for message in messages:
        assert message["jsonrpc"] == "2.0"
        assert ("result" in message) != ("error" in message), message
    if answer.status >= 400:
        (error,) = messages
        assert isinstance(error["error"]["code"], int)
        assert isinstance(error["error"]["message"], str)


def _task_count() -> int:
    """Every task of this trio run."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    nurseries = list(root.child_nurseries)
    while nurseries:
        for task in nurseries.pop().child_tasks:
            count += 1
            nurseries.extend(task.child_nurseries)
    return count


async def _quiet_task_count() -> int:
    """The task count once it has not changed for a while (bounded wait)."""
    count, still = _task_count(), 0
    with trio.move_on_after(2):
        while still < 10:
            await trio.sleep(0.001)
            now = _task_count()
            count, still = now, (still + 1 if now == count else 0)
    return count


async def _settle(tasks: int) -> None:
    """Let what a request started (handlers, store calls) end; bounded."""
    with trio.move_on_after(2):
        while _task_count() > tasks:  # noqa: ASYNC110 - nothing to wait on but the count
            await trio.sleep(0.001)


async def run_case(scene: Scene, method: str, headers: Headers, body: bytes) -> TestResponse:
    """Send one hostile request; check the answer and that nothing was left behind."""
    tasks_before = await _quiet_task_count()
    before = scene.manager.statistics()
    answer = await asgi_request(scene.app, method, headers, body)
    assert_well_answered(answer, method)
    await _settle(tasks_before)
    after = scene.manager.statistics()
    opened = after.created - before.created
    # A request may open a session only by a successful initialize, which
    # answers 200 with its id; anything else leaves the count alone.
    if answer.status == 200 and "mcp-session-id" in answer.headers and opened:
        assert opened == 1
        new_id = answer.headers["mcp-session-id"]
        await scene.manager.close_session(new_id)
        await _settle(tasks_before)
        after = scene.manager.statistics()
    else:
        assert opened == 0, (before, after)
    closed = 1 if method == "DELETE" and answer.status == 200 else 0
    assert after.live_sessions == before.live_sessions - closed, (before, after)
    assert scene.manager.get_session(scene.session_id) is not None
    assert _task_count() <= tasks_before
    await scene.live_session_answers()
    return answer


def run_in_trio(tmp_path: Path, case: Any, version: str = LATEST) -> None:
    """A fresh app per example: hypothesis runs the body many times, trio once each."""

    async def main() -> None:
        db = tmp_path / f"sessions-{trio.current_time()}.db"
        with no_errors_logged():
            async with trio.open_nursery() as nursery:
                scene = await open_scene(nursery, db, version)
                async with trio.open_nursery() as inner:
                    # The case runs as a child of `inner`, so its nursery's
                    # children are the request's tasks and nothing else.
                    inner.start_soon(case, scene)
                nursery.cancel_scope.cancel()
        db.unlink(missing_ok=True)

    trio.run(main)


# -- strategies: JSON text a client could send ----------------------------------------

_odd_digits = st.sampled_from(["\xb2", "\xb3", "\xb9", "\u0663", "\u00bd", "\uff11", "\u2460"])

hostile_number = st.one_of(
    st.integers(4301, 6000).map(lambda n: "9" * n),
    st.integers(101, 400).map(lambda n: "-" + "1" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1." + "0" * 150]),
)
hostile_string = st.one_of(
    st.sampled_from(["\\ud800", "\\udfff", "a\\ud83d", "\\udc00b", "\\ud800\\ud800"]).map(
        lambda s: f'"{s}"'
    ),
    st.integers(257, 2000).map(lambda n: json.dumps("i" * n)),
    st.lists(_odd_digits, min_size=1, max_size=4).map(lambda ds: json.dumps("".join(ds))),
)
wrong_type = st.sampled_from(["null", "true", "false", "[]", "{}", "0", '""', "-1.5", "[1,2]"])


def _deep(n: int, kind: str) -> str:
    return ("[" * n + "]" * n) if kind == "list" else ('{"a":' * n + "{}" + "}" * n)


deep_value = st.builds(_deep, st.integers(65, 3000), st.sampled_from(["list", "dict"]))
plain_value = st.recursive(
    st.one_of(
        st.integers(-(10**18), 10**18).map(str),
        st.text(max_size=20).map(json.dumps),
        st.sampled_from(["true", "false", "null", "1.5"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.text(max_size=5), inner, max_size=3).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=6,
)
any_value = st.one_of(hostile_number, hostile_string, wrong_type, deep_value, plain_value)
methods = st.one_of(
    st.sampled_from(["ping", "tools/call", "tools/list", "nope", "notifications/x"]).map(
        json.dumps
    ),
    hostile_string,
    wrong_type,
)


@st.composite
def hostile_message(draw: st.DrawFn) -> str:
    """A JSON-RPC-shaped object whose members may each be hostile or missing."""
    members = ['"jsonrpc":"2.0"']
    if draw(st.booleans()):
        members.append(f'"id":{draw(st.one_of(any_value, st.integers(1, 99).map(str)))}')
    if draw(st.booleans()) or len(members) == 1:
        members.append(f'"method":{draw(methods)}')
    kind = draw(st.sampled_from(["params", "arguments", "result", "error", "none"]))
    if kind == "params":
        members.append(f'"params":{draw(any_value)}')
    elif kind == "arguments":
        value = draw(any_value)
        members.append(f'"params":{{"name":"echo","arguments":{{"text":{value}}}}}')
    elif kind in ("result", "error"):
        members.append(f'"{kind}":{draw(any_value)}')
    order = draw(st.permutations(members))
    return "{" + ",".join(order) + "}"


#: A well-formed request but for one hostile value deep in its arguments.
hostile_arguments = st.builds(
    '{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo",'
    '"arguments":{{"text":{}}}}}}}'.format,
    st.integers(1, 10**6).map(str),
    any_value,
)
hostile_body = st.one_of(
    st.one_of(
        hostile_arguments,
        hostile_message(),
        st.lists(hostile_message(), min_size=1, max_size=5).map(
            lambda ms: "[" + ",".join(ms) + "]"
        ),
        any_value,
    ).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),  # not UTF-8 at all, raw surrogates included
)

hostile_settings = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(max_examples=300, deadline=None)
@given(body=hostile_body)
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":"\\ud800"}}')
@example(body=b'{"jsonrpc":"2.0","id":"r","result":{"a":["\\udfff"]}}')
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1e999}}')
def test_decode_body_refuses_cleanly_or_accepts_what_encode_can_send(body: bytes) -> None:
    """Sans-IO: only ProtocolError comes out, and what is accepted re-encodes as UTF-8 JSON."""
    error: ProtocolError | None = None
    try:
        messages, _ = decode_body(body)
    except ProtocolError as exc:
        error, messages = exc, []
    if error is not None:
        assert error.http_status == 400
        assert error.code in (PARSE_ERROR, INVALID_REQUEST)
        reply = ErrorResponse(error.request_id, error.code, error.message, error.data)
        assert json.loads(encode(reply))["error"]["code"] == error.code
    for message in messages:
        # Valid Unicode throughout (strict UTF-8 raises for a surrogate) ...
        text = json.dumps(message.to_json(), ensure_ascii=False)
        assert json.loads(encode(message)) == json.loads(text.encode("utf-8"))
        # ... ids and methods within their limits.
        request_id = getattr(message, "id", None)
        assert not isinstance(request_id, str) or len(request_id) <= 256
        assert len(getattr(message, "method", "")) <= 256


@hostile_settings
@given(body=hostile_body, in_session=st.booleans())
def test_hostile_bodies(tmp_path: Path, body: bytes, in_session: bool) -> None:
    async def case(scene: Scene) -> None:
        headers = scene.session_headers() if in_session else POST
        await run_case(scene, "POST", headers, body)

    run_in_trio(tmp_path, case)


@hostile_settings
@given(body=st.lists(hostile_message(), min_size=1, max_size=8))
def test_hostile_batches_on_a_2025_03_26_session(tmp_path: Path, body: list[str]) -> None:
    async def case(scene: Scene) -> None:
        text = "[" + ",".join(body) + "]"
        await run_case(scene, "POST", scene.session_headers(), text.encode())

    run_in_trio(tmp_path, case, LEGACY)


@st.composite
def hostile_initialize(draw: st.DrawFn) -> str:
    """``initialize`` whose id, version, capabilities or clientInfo may be hostile."""
    fields = {
        "id": draw(st.one_of(st.just("1"), any_value)),
        "protocolVersion": draw(st.one_of(st.just(json.dumps(LATEST)), any_value)),
        "capabilities": draw(st.one_of(st.just("{}"), any_value)),
        "clientInfo": draw(
            st.one_of(st.just('{"name":"x","version":"1"}'), any_value, hostile_string)
        ),
    }
    kept = [k for k in fields if k != "id" and (k == "protocolVersion" or draw(st.booleans()))]
    params = ",".join(f'"{k}":{fields[k]}' for k in kept)
    return f'{{"jsonrpc":"2.0","id":{fields["id"]},"method":"initialize","params":{{{params}}}}}'


@hostile_settings
@given(body=hostile_initialize())
def test_hostile_initialize(tmp_path: Path, body: str) -> None:
    async def case(scene: Scene) -> None:
        answer = await run_case(scene, "POST", POST, body.encode())
        if answer.status != 200:
            assert "mcp-session-id" not in answer.headers

    run_in_trio(tmp_path, case)


_header_values = st.one_of(
    st.builds(lambda d: "127.0.0.1:" + d, st.text(_odd_digits, min_size=1, max_size=3)),
    st.integers(6, 5000).map(lambda n: "127.0.0.1:" + "1" * n),
    st.sampled_from(["[::1]:\xb2", "localhost:\xb9\xb9", "[::1", "127.0.0.1:-1", ":", ""]),
    st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
)
_header_names = st.sampled_from(
    [
        b"host",
        b"origin",
        b"content-length",
        b"mcp-protocol-version",
        b"mcp-session-id",
        b"last-event-id",
        b"accept",
        b"content-type",
    ]
)


@hostile_settings
@given(
    name=_header_names,
    value=_header_values,
    as_origin=st.booleans(),
    method=st.sampled_from(["POST", "GET", "DELETE"]),
    with_session=st.booleans(),
)
def test_hostile_headers(
    tmp_path: Path, name: bytes, value: str, as_origin: bool, method: str, with_session: bool
) -> None:
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode()  # what a client sends for "٣": its UTF-8 bytes
    if name == b"origin" and as_origin:
        raw = b"http://" + raw

    async def case(scene: Scene) -> None:
        base = scene.session_headers() if with_session else list(POST)
        if method == "DELETE" and with_session:
            # A DELETE the header does not spoil ends a session: not the live one.
            init = json.dumps(initialize_body(scene.version)).encode()
            other = (await asgi_request(scene.app, "POST", POST, init)).headers["mcp-session-id"]
            base = [(k, other.encode() if k == b"mcp-session-id" else v) for k, v in base]
        if method == "GET":
            base = [(k, v) for k, v in base if k not in (b"accept", b"content-type")]
            base.append((b"accept", b"text/event-stream"))
            if name != b"last-event-id":
                # A valid-looking id keeps GET from opening a long-lived stream.
                base.append((b"last-event-id", b"nosuchstream_1"))
        headers = [(k, v) for k, v in base if k != name] + [(name, raw)]
        body = b"" if method != "POST" else _message(id=5, method="ping")
        await run_case(scene, method, headers, body)

    run_in_trio(tmp_path, case)


# -- each reported failure, one by one ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "echoed"),
    [
        ('{"jsonrpc":"2.0","id":' + "9" * 5000 + ',"method":"ping"}', 400, PARSE_ERROR, None),
        ('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', 400, INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","id":3,"method":"x\\ud800"}', 400, INVALID_REQUEST, 3),
        (
            '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":'
            '{"name":"echo","arguments":{"text":"\\ud800"}}}',
            400,
            INVALID_REQUEST,
            4,
        ),
    ],
)
@pytest.mark.parametrize("in_session", [False, True])
async def test_reported_bodies(
    tmp_path: Path,
    nursery: trio.Nursery,
    body: str,
    status: int,
    code: int,
    echoed: object,
    in_session: bool,
) -> None:
    scene = await open_scene(nursery, tmp_path / "s.db")
    headers = scene.session_headers() if in_session else POST
    with no_errors_logged():
        answer = await run_case(scene, "POST", headers, body.encode())
    assert answer.status == status
    (error,) = answer.messages
    assert error["error"]["code"] == code
    assert error.get("id") == echoed


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc":"2.0","id":"\\ud800","method":"initialize","params":'
        '{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x"}}}',
        json.dumps(initialize_body(deep=_nested(600))),
        json.dumps(initialize_body(blob="b" * 70_000)),
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
        '"2025-11-25","capabilities":{},"clientInfo":{"name":"\\udfff"}}}',
    ],
)
async def test_reported_initialize_allocates_nothing(
    tmp_path: Path, nursery: trio.Nursery, body: str
) -> None:
    scene = await open_scene(nursery, tmp_path / "s.db")
    with no_errors_logged():
        answer = await run_case(scene, "POST", POST, body.encode())
    assert answer.status == 400
    assert "mcp-session-id" not in answer.headers
    (error,) = answer.messages
    assert error["error"]["code"] in (INVALID_REQUEST, INVALID_PARAMS)


@pytest.mark.parametrize(
    ("name", "value", "status"),
    [
        (b"host", b"127.0.0.1:\xb2", 400),
        (b"host", b"127.0.0.1:" + b"1" * 5000, 400),
        (b"origin", b"http://127.0.0.1:\xb2", 403),
        (b"origin", b"http://localhost:" + b"9" * 5000, 403),
        (b"content-length", b"\xb2", 400),
        (b"content-length", b"1" * 5000, 413),
    ],
)
async def test_reported_headers(
    tmp_path: Path, nursery: trio.Nursery, name: bytes, value: bytes, status: int
) -> None:
    scene = await open_scene(nursery, tmp_path / "s.db")
    headers = [(k, v) for k, v in scene.session_headers() if k != name] + [(name, value)]
    with no_errors_logged():
        answer = await run_case(scene, "POST", headers, _message(id=9, method="ping"))
    # A Host we cannot read is a bad request; an Origin we cannot read is not allowed.
    assert answer.status == status


async def test_reported_last_event_id(tmp_path: Path, nursery: trio.Nursery) -> None:
    scene = await open_scene(nursery, tmp_path / "s.db")
    headers = [
        (b"accept", b"text/event-stream"),
        (b"mcp-session-id", scene.session_id.encode()),
        (b"last-event-id", "g1_¹²".encode("latin-1")),
    ]
    with no_errors_logged():
        answer = await run_case(scene, "GET", headers, b"")
    assert answer.status == 400
    (error,) = answer.messages
    assert error["error"]["code"] == INVALID_REQUEST


async def test_input_limits_option_reaches_the_app(tmp_path: Path, nursery: trio.Nursery) -> None:
    scene = await open_scene(
        nursery, tmp_path / "s.db", input_limits=InputLimits(max_depth=4, max_id_length=3)
    )
    body = _message(id=1, method="tools/call", params={"name": "echo", "arguments": {"text": "x"}})
    assert (await asgi_request(scene.app, "POST", scene.session_headers(), body)).status == 200
    deep = _message(id=2, method="ping", params={"a": {"b": {"c": {}}}})
    answer = await run_case(scene, "POST", scene.session_headers(), deep)
    assert (answer.status, answer.messages[0]["id"]) == (400, 2)
    long_id = _message(id="abcd", method="ping")
    answer = await run_case(scene, "POST", scene.session_headers(), long_id)
    assert answer.status == 400
    assert "id" not in answer.messages[0]


async def test_a_handler_returning_a_surrogate_keeps_its_session(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # The server's own data: encode() escapes it instead of killing the worker.
    scene = await open_scene(nursery, tmp_path / "s.db")
    with no_errors_logged():
        body = _message(id=1, method="tools/call", params={"name": "odd", "arguments": {}})
        answer = await run_case(scene, "POST", scene.session_headers(), body)
    assert answer.status == 200
    (reply,) = answer.messages
    assert reply["result"]["content"][0]["text"] == "\ud800"


# -- item 6: over real Hypercorn, HTTP/1.1 and h2c -------------------------------------


@pytest.mark.parametrize("http2", [False, True])
async def test_early_answers_over_real_hypercorn(
    start_server: StartServer, http2: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Answers given before the request body arrived, then the server still serves.

    Over h2c, Hypercorn 0.18 raised ``KeyError`` for DATA on the finished
    stream, which ended ``serve()`` for everyone (see ``_hypercorn_h2``).
    """
    app = StreamableHTTPApp(make_server(), max_body_bytes=1000)
    url = await start_server(app)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(http1=not http2, http2=http2, timeout=10) as client:
        cases = [
            ("POST", b"x" * 300_000, 413),
            ("GET", b"y" * 300_000, 400),
            ("DELETE", b"z" * 300_000, 400),
            ("POST", b'{"jsonrpc":"2.0","id":1,"method":"ping"}', 400),
        ]
        for method, content, status in cases:
            with trio.fail_after(10):
                r = await client.request(method, url, headers=headers, content=content)
            assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] in (INVALID_REQUEST, -32000)
            await trio.sleep(0.05)  # let late DATA frames arrive at the server
        # Still serving.
        r = await client.post(url, json=initialize_body(), headers=headers)
        assert r.status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
