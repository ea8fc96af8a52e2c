"""The era classifier and the 2026-07-28 ladder, sans-IO: plain messages and headers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_mcp_sessions._protocol._era import (
    ADVERTISED_VERSIONS,
    HEADER_MISMATCH,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    Era,
    RoutingHeaders,
    check_modern,
    check_param_headers,
    classify_other,
    classify_post,
    decode_header_value,
    http_status_for,
    param_headers_of,
)
from trio_mcp_sessions._protocol._jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    Notification,
    ProtocolError,
    Request,
    Response,
)

MODERN = "2026-07-28"


def meta(version: str = MODERN, **extra: Any) -> dict[str, Any]:
    return {META_PROTOCOL_VERSION: version, META_CLIENT_CAPABILITIES: {}, **extra}


def request(method: str = "tools/list", **params: Any) -> Request:
    return Request(1, method, {"_meta": meta(), **params})


def headers(method: str | None = "tools/list", **kw: Any) -> RoutingHeaders:
    return RoutingHeaders(protocol_version=kw.pop("version", MODERN), method=method, **kw)


def refusal(*args: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        check_modern(*args, **kwargs)
    return caught.value


# -- classification ---------------------------------------------------------------------


def test_a_meta_claim_selects_the_modern_era_even_for_initialize() -> None:
    assert classify_post([request()], None) is Era.MODERN
    assert classify_post([Request(1, "initialize", {"_meta": meta()})], "2025-11-25") is Era.MODERN


def test_without_a_claim_the_header_decides_and_handshake_versions_keep_sessions() -> None:
    init = Request(1, "initialize", {"protocolVersion": "2025-11-25"})
    assert classify_post([init], None) is Era.SESSION
    assert classify_post([Request(2, "tools/list")], "2025-06-18") is Era.SESSION
    assert classify_post([Request(2, "server/discover")], MODERN) is Era.MODERN
    assert classify_post([Request(2, "server/discover")], "2099-01-01") is Era.MODERN
    # A batch or a posted response is session traffic unless it claims the new revision.
    assert classify_post([Request(1, "a"), Request(2, "b")], None) is Era.SESSION
    assert classify_post([Response(1, {})], None) is Era.SESSION
    assert classify_post([Request(1, "a"), request()], None) is Era.MODERN


def test_get_and_delete_are_modern_only_by_their_header() -> None:
    assert classify_other(None) is Era.SESSION
    assert classify_other("2025-11-25") is Era.SESSION
    assert classify_other(MODERN) is Era.MODERN
    assert classify_other("1999-01-01", has_session=True) is Era.SESSION


def test_session_traffic_without_a_claim_stays_in_its_session() -> None:
    # An unknown header inside a session is still that session's -32022.
    assert classify_post([Request(2, "ping")], "1999-01-01", has_session=True) is Era.SESSION
    assert classify_post([Request(2, "ping")], "1999-01-01") is Era.MODERN
    # A claim is modern whatever the session header says (it is then ignored).
    assert classify_post([request()], MODERN, has_session=True) is Era.MODERN


# -- the ladder, rung by rung ------------------------------------------------------------


def test_a_valid_request_passes_with_what_its_meta_declared() -> None:
    info = {"name": "c", "version": "1"}
    extra: dict[str, Any] = {META_CLIENT_INFO: info, META_LOG_LEVEL: "info"}
    message = Request(7, "tools/list", {"_meta": meta(**extra)})
    passed = check_modern([message], headers(), log_levels=("debug", "info"))
    assert passed.protocol_version == MODERN
    assert passed.client_info == info
    assert passed.log_level == "info"
    assert passed.client_capabilities == {}


@pytest.mark.parametrize(
    "params",
    [
        None,
        {},
        {"_meta": {}},
        {"_meta": {META_PROTOCOL_VERSION: MODERN}},
        {"_meta": {META_CLIENT_CAPABILITIES: {}}},
        {"_meta": "x"},
    ],
)
def test_rung_1_missing_meta_keys_are_invalid_params(params: dict[str, Any] | None) -> None:
    error = refusal([Request(3, "server/discover", params)], headers("server/discover"))
    assert (error.code, error.http_status, error.request_id) == (INVALID_PARAMS, 400, 3)


def test_rung_1_comes_before_the_header_check() -> None:
    error = refusal([Request(3, "tools/list", {})], RoutingHeaders())
    assert error.code == INVALID_PARAMS


@pytest.mark.parametrize(
    ("routing", "why"),
    [
        (RoutingHeaders(method="tools/list"), "MCP-Protocol-Version"),
        (headers(version="2025-11-25"), "does not match"),
        (headers(method=None), "Mcp-Method"),
        (headers(method="Tools/List"), "does not match"),
        (headers(duplicated=frozenset({"mcp-method"})), "more than once"),
    ],
)
def test_rung_2_headers_must_mirror_the_body(routing: RoutingHeaders, why: str) -> None:
    error = refusal([request()], routing)
    assert (error.code, error.http_status) == (HEADER_MISMATCH, 400)
    assert why in error.message


def test_rung_2_comes_before_the_version_check() -> None:
    message = Request(4, "tools/list", {"_meta": meta("v999.0.0")})
    error = refusal([message], headers())
    assert error.code == HEADER_MISMATCH


def test_rung_3_an_unsupported_version_lists_ours() -> None:
    message = Request(4, "tools/list", {"_meta": meta("v999.0.0")})
    error = refusal([message], headers(version="v999.0.0"), supported=("2026-07-28",))
    assert (error.code, error.http_status, error.request_id) == (
        UNSUPPORTED_PROTOCOL_VERSION,
        400,
        4,
    )
    # What server/discover lists: every revision we serve, both eras.
    assert error.data == {"supported": list(ADVERTISED_VERSIONS), "requested": "v999.0.0"}
    assert ADVERTISED_VERSIONS[0] == "2026-07-28"


@pytest.mark.parametrize(
    "method",
    ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"],
)
def test_rung_4_removed_methods_are_not_found(method: str) -> None:
    error = refusal([request(method)], headers(method))
    assert (error.code, error.http_status, error.request_id) == (METHOD_NOT_FOUND, 404, 1)


def test_a_batch_or_a_response_is_not_a_modern_request() -> None:
    assert refusal([request(), request()], headers()).code == INVALID_REQUEST
    assert refusal([Response(1, {})], headers()).code == INVALID_REQUEST


def test_a_notification_needs_no_method_header_but_a_wrong_one_is_refused() -> None:
    note = Notification("notifications/cancelled", {"_meta": meta()})
    assert check_modern([note], headers(None)).message is note
    assert refusal([note], headers("other")).code == HEADER_MISMATCH


def test_an_invalid_log_level_is_invalid_params() -> None:
    message = Request(1, "tools/list", {"_meta": meta(**{META_LOG_LEVEL: "loud"})})
    assert refusal([message], headers(), log_levels=("info",)).code == INVALID_PARAMS


# -- Mcp-Name ---------------------------------------------------------------------------


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize(
    ("method", "field"),
    [("tools/call", "name"), ("prompts/get", "name"), ("resources/read", "uri")],
)
def test_mcp_name_mirrors_the_name_or_uri(method: str, field: str) -> None:
    message = request(method, **{field: "Hello, 世界"})
    check_modern([message], headers(method, name=b64("Hello, 世界")))
    assert refusal([message], headers(method)).code == HEADER_MISMATCH
    assert refusal([message], headers(method, name="other")).code == HEADER_MISMATCH
    plain = request(method, **{field: "echo"})
    check_modern([plain], headers(method, name="echo"))


def test_routing_headers_from_asgi_trim_whitespace_and_find_duplicates() -> None:
    parsed = RoutingHeaders.from_asgi(
        [
            (b"mcp-protocol-version", b" 2026-07-28 "),
            (b"mcp-name", b"\techo "),
            (b"mcp-param-region", b"us-west1"),
            (b"mcp-method", b"tools/call"),
            (b"mcp-method", b"tools/list"),
            (b"accept", b"*/*"),
        ]
    )
    assert parsed.protocol_version == MODERN
    assert parsed.name == "echo"
    assert parsed.params == {"region": "us-west1"}
    assert parsed.duplicated == {"mcp-method"}


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("us-west1", "us-west1"),
        ("=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界"),
        ("=?base64?IHBhZGRlZCA=?=", " padded "),
        ("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?="),
        ("=?BASE64?SGk=?=", "=?BASE64?SGk=?="),  # the markers are case-sensitive: literal
        ("=?base64?SGk?=", None),  # bad padding
        ("=?base64?S*k=?=", None),  # not the alphabet
        ("=?base64?//79?=", None),  # not UTF-8
        ("a\x00b", None),
        ("caf\xe9", None),
    ],
)
def test_header_values_decode_per_the_sentinel_rules(value: str, decoded: str | None) -> None:
    assert decode_header_value(value) == decoded


@given(st.text(max_size=40))
def test_every_text_round_trips_through_the_sentinel(text: str) -> None:
    assert decode_header_value(b64(text)) == text


# -- Mcp-Param-* -------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry"},
        "nested": {
            "type": "object",
            "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}},
        },
        "query": {"type": "string"},
    },
}


def test_annotations_are_found_along_properties_only() -> None:
    assert param_headers_of(SCHEMA) == {
        ("region",): ("Region", "string"),
        ("count",): ("Count", "integer"),
        ("dry",): ("Dry", "boolean"),
        ("nested", "zone"): ("Zone", "string"),
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"properties": {"a": {"type": "number", "x-mcp-header": "A"}}},
        {"properties": {"a": {"type": "string", "x-mcp-header": ""}}},
        {"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}},
        {
            "properties": {
                "a": {"type": "string", "x-mcp-header": "A"},
                "b": {"type": "string", "x-mcp-header": "a"},
            }
        },
    ],
)
def test_annotations_the_spec_forbids_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="x-mcp-header"):
        param_headers_of(bad)


def params(**values: str) -> RoutingHeaders:
    return RoutingHeaders(params={k.lower(): v for k, v in values.items()})


def test_param_headers_must_match_the_arguments() -> None:
    found = param_headers_of(SCHEMA)
    args = {"region": "us-west1", "count": 42, "dry": False, "nested": {"zone": "b"}}
    check_param_headers(
        found, args, params(Region="us-west1", Count="42.0", Dry="false", Zone="b"), 1
    )
    check_param_headers(
        found, {"query": "x", "region": None}, params(), 1
    )  # absent or null: no header
    for wrong in (
        params(Count="42", Dry="false", Zone="b"),  # Region missing
        params(Region="eu", Count="42", Dry="false", Zone="b"),
        params(Region="us-west1", Count="43", Dry="false", Zone="b"),
        params(Region="us-west1", Count="42", Dry="False", Zone="b"),
        params(Region="=?base64?!!?=", Count="42", Dry="false", Zone="b"),
    ):
        with pytest.raises(ProtocolError) as caught:
            check_param_headers(found, args, wrong, 1)
        assert caught.value.code == HEADER_MISMATCH
    with pytest.raises(ProtocolError):  # a header claiming a value the body does not have
        check_param_headers(found, {}, params(Region="us-west1"), 1)


def test_http_statuses_of_modern_errors() -> None:
    assert http_status_for(METHOD_NOT_FOUND) == 404
    assert http_status_for(HEADER_MISMATCH) == 400
    assert http_status_for(-32603) == 200
