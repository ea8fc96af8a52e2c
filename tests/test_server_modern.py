"""The server API at 2026-07-28, beside the handshake era it leaves as it was (no HTTP).

``McpServer.handle_request`` driven with a small peer whose client is a
2026-07-28 ``ClientInfo`` (what the stateless runner builds from ``_meta``)
or a handshake-era one.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, TypedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _peers import FakePeer
from trio_mcp_sessions import (
    CacheHint,
    Context,
    McpError,
    McpHeader,
    McpServer,
    ProtocolError,
    Request,
    ToolResult,
)
from trio_mcp_sessions._protocol._era import (
    ADVERTISED_VERSIONS,
    HEADER_MISMATCH,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    RoutingHeaders,
    check_modern,
    check_param_headers,
)
from trio_mcp_sessions._protocol._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
)
from trio_mcp_sessions._server._errors import InputRequired, MissingClientCapability

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
SERVER_INFO = {"name": "modern", "version": "3.1", "title": "Modern"}

#: The conformance suite's ``json_schema_2020_12_tool`` input schema, keyword for keyword.
SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addr",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contact": {
            "anyOf": [
                {"type": "object", "properties": {"email": {"type": "string"}}},
                {"type": "object", "properties": {"phone": {"type": "string"}}},
            ]
        },
        "kind": {"allOf": [{"type": "string"}, {"minLength": 1}]},
    },
    "if": {"properties": {"kind": {"const": "business"}}},
    "then": {"required": ["address"]},
    "else": {"required": []},
    "additionalProperties": False,
}


def modern_meta(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return {META_PROTOCOL_VERSION: MODERN, META_CLIENT_CAPABILITIES: capabilities or {}}


async def modern(
    server: McpServer,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    capabilities: dict[str, Any] | None = None,
) -> Any:
    """*method* as a 2026-07-28 request: the version in ``_meta``, a modern peer."""
    meta = modern_meta(capabilities)
    peer = FakePeer(MODERN, capabilities)
    request = Request(7, method, {**(params or {}), "_meta": meta})
    return await server.handle_request(request, Context(peer, 7, meta), peer)


async def handshake(server: McpServer, method: str, params: dict[str, Any] | None = None) -> Any:
    peer = FakePeer(HANDSHAKE)
    return await server.handle_request(Request(7, method, params), Context(peer, 7, None), peer)


class Where(TypedDict):
    region: Annotated[str, McpHeader("Region")]
    zone: str


def make_server(**options: Any) -> McpServer:
    server = McpServer("modern", "3.1", title="Modern", instructions="use it", **options)

    @server.tool()
    def query(region: Annotated[str, McpHeader("Region")], sql: str, limit: int = 10) -> str:
        """Run a query in a region."""
        return f"{region}: {sql} ({limit})"

    @server.tool()
    def tagged() -> ToolResult:
        """A result with its own _meta."""
        return ToolResult([{"type": "text", "text": "t"}], meta={"app/trace": "abc"})

    @server.tool(input_schema=copy.deepcopy(SCHEMA_2020_12))
    def json_schema_2020_12_tool(name: str = "") -> str:
        """2020-12 keywords."""
        return name

    @server.tool()
    def asks(ctx: Context) -> str:
        """Needs the client's input first."""
        raise InputRequired({"user_name": {"method": "elicitation/create", "params": {}}})

    @server.tool()
    def needs_sampling() -> str:
        """Needs a capability the client did not declare."""
        raise MissingClientCapability("sampling")

    @server.resource("mem://static", mime_type="text/plain")
    def static() -> str:
        return "static"

    @server.resource("mem://gone")
    def gone() -> str:
        raise McpError(RESOURCE_NOT_FOUND, "Resource vanished", {"why": "deleted"})

    @server.resource("mem://asks")
    def asking() -> str:
        raise InputRequired({"k": {"method": "roots/list"}})

    @server.resource("mem://items/{item}", cache=CacheHint(60_000, "public"))
    def item(item: str) -> str:
        return item

    @server.resource("mem://fresh", cache=CacheHint(5))
    def fresh() -> str:
        return "fresh"

    @server.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Hello {name}"

    @server.request_handler("custom/echo")
    async def echo(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return {"echo": params.get("x"), "_meta": {"app/own": 1}}

    return server


# -- 1. resultType and serverInfo ------------------------------------------------------------


async def test_every_modern_result_is_complete_and_names_the_server() -> None:
    server = make_server()
    answers = [
        await modern(
            server, "tools/call", {"name": "query", "arguments": {"region": "eu", "sql": "1"}}
        ),
        await modern(server, "prompts/get", {"name": "greet", "arguments": {"name": "ann"}}),
        await modern(
            server,
            "completion/complete",
            {
                "ref": {"type": "ref/prompt", "name": "greet"},
                "argument": {"name": "name", "value": ""},
            },
        ),
        await modern(server, "custom/echo", {"x": 2}),
        await modern(server, "server/discover"),
        *[await modern(server, method) for method in LISTS],
        await modern(server, "resources/read", {"uri": "mem://static"}),
    ]
    for answer in answers:
        assert answer["resultType"] == "complete"
        assert answer["_meta"][META_SERVER_INFO] == SERVER_INFO
    assert answers[0]["content"] == [{"type": "text", "text": "eu: 1 (10)"}]
    assert answers[3]["echo"] == 2


async def test_a_handlers_own_meta_is_kept_beside_the_server_info() -> None:
    server = make_server(description="does things")
    tagged = await modern(server, "tools/call", {"name": "tagged"})
    info = {**SERVER_INFO, "description": "does things"}
    assert tagged["_meta"] == {META_SERVER_INFO: info, "app/trace": "abc"}
    echoed = await modern(server, "custom/echo")
    assert echoed["_meta"] == {META_SERVER_INFO: info, "app/own": 1}
    assert server.server_info() == info
    # The handler's objects are not changed: the next answer is built afresh.
    assert await handshake(server, "tools/call", {"name": "tagged"}) == {
        "content": [{"type": "text", "text": "t"}],
        "_meta": {"app/trace": "abc"},
    }


# -- 2. server/discover -------------------------------------------------------------------------


async def test_discover_lists_versions_capabilities_identity_and_hints() -> None:
    server = make_server()
    result = await modern(server, "server/discover")
    assert result == {
        "resultType": "complete",
        "supportedVersions": list(ADVERTISED_VERSIONS),
        "capabilities": {
            "logging": {},
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "completions": {},
        },
        "instructions": "use it",
        "_meta": {META_SERVER_INFO: SERVER_INFO},
        "ttlMs": 0,
        "cacheScope": "private",
    }
    assert server.discover_result() == result


def test_discover_versions_are_what_an_unsupported_version_error_lists() -> None:
    body = {"_meta": {META_PROTOCOL_VERSION: "v999.0.0", META_CLIENT_CAPABILITIES: {}}}
    headers = RoutingHeaders(protocol_version="v999.0.0", method="server/discover")
    with pytest.raises(ProtocolError) as caught:
        check_modern([Request(1, "server/discover", body)], headers)
    assert caught.value.data["supported"] == McpServer("x").discover_result()["supportedVersions"]


async def test_discover_declares_only_what_is_registered_and_the_rest_is_not_found() -> None:
    server = McpServer("bare")

    @server.tool()
    def only() -> str:
        return "x"

    result = server.discover_result()
    assert result["capabilities"] == {"logging": {}, "tools": {"listChanged": True}}
    assert "instructions" not in result
    assert (await modern(server, "tools/list"))["tools"][0]["name"] == "only"
    for method, params in (
        ("prompts/list", None),
        ("prompts/get", {"name": "p"}),
        ("resources/list", None),
        ("resources/templates/list", None),
        ("resources/read", {"uri": "mem://x"}),
        ("completion/complete", {"ref": {}, "argument": {}}),
    ):
        with pytest.raises(McpError) as caught:
            await modern(server, method, params)
        assert caught.value.code == METHOD_NOT_FOUND, method
    # The handshake era answers them as it always did.
    assert await handshake(server, "prompts/list") == {"prompts": []}
    assert await handshake(server, "resources/list") == {"resources": []}


async def test_discover_is_not_found_in_a_session_and_removed_methods_are_not_found_modern() -> (
    None
):
    server = make_server()
    with pytest.raises(McpError) as caught:
        await handshake(server, "server/discover")
    assert caught.value.code == METHOD_NOT_FOUND
    for method, params in (
        ("ping", None),
        ("logging/setLevel", {"level": "info"}),
        ("resources/subscribe", {"uri": "mem://static"}),
        ("resources/unsubscribe", {"uri": "mem://static"}),
        ("initialize", {}),
    ):
        with pytest.raises(McpError) as caught:
            await modern(server, method, params)
        assert caught.value.code == METHOD_NOT_FOUND, method
    assert await handshake(server, "ping") == {}


async def test_the_peer_decides_the_era_not_the_claim_alone() -> None:
    """A claim in ``_meta`` on a handshake-era peer is just metadata."""
    server = make_server()
    peer = FakePeer(HANDSHAKE)
    request = Request(1, "tools/list", {"_meta": modern_meta()})
    result = await server.handle_request(request, Context(peer, 1, None), peer)
    assert "resultType" not in result
    assert set(result) == {"tools"}


async def test_a_request_without_a_claim_never_asks_the_peer() -> None:
    """A session may serve ``ping`` before it knows its client; the era needs no client then."""
    server = make_server()
    peer = FakePeer()  # a session before its initialize is answered: no client yet
    ctx = Context(peer, 1, None)
    assert await server.handle_request(Request(1, "ping"), ctx, peer) == {}
    assert (
        await server.handle_request(Request(2, "logging/setLevel", {"level": "info"}), ctx, peer)
        == {}
    )
    assert peer.log_level == "info"


# -- 3. caching hints ---------------------------------------------------------------------------


async def test_default_hints_are_on_every_cacheable_result_and_nowhere_else() -> None:
    server = make_server()
    for method in ("server/discover", *LISTS):
        result = await modern(server, method)
        assert (result["ttlMs"], result["cacheScope"]) == (0, "private"), method
    read = await modern(server, "resources/read", {"uri": "mem://static"})
    assert (read["ttlMs"], read["cacheScope"]) == (0, "private")
    for method, params in (
        ("tools/call", {"name": "tagged"}),
        ("prompts/get", {"name": "greet", "arguments": {"name": "a"}}),
        ("custom/echo", None),
    ):
        result = await modern(server, method, params)
        assert not {"ttlMs", "cacheScope"} & set(result), method


async def test_hints_per_server_per_method_and_per_resource() -> None:
    server = make_server(
        cache=CacheHint(1_000, "public"),
        cache_hints={"tools/list": CacheHint(300_000, "public"), "resources/read": CacheHint(7)},
    )
    expected = {
        "server/discover": (1_000, "public"),
        "tools/list": (300_000, "public"),
        "prompts/list": (1_000, "public"),
        "resources/list": (1_000, "public"),
        "resources/templates/list": (1_000, "public"),
    }
    for method, hint in expected.items():
        result = await modern(server, method)
        assert (result["ttlMs"], result["cacheScope"]) == hint, method
    for uri, hint in (
        ("mem://static", (7, "private")),  # the method's
        ("mem://items/a", (60_000, "public")),  # its template's own
        ("mem://fresh", (5, "private")),  # its own
    ):
        read = await modern(server, "resources/read", {"uri": uri})
        assert (read["ttlMs"], read["cacheScope"]) == hint, uri


async def test_no_hints_when_the_read_needs_input_first() -> None:
    """An ``input_required`` answer is the runner's, built from the exception: no result here."""
    server = make_server()
    with pytest.raises(InputRequired) as caught:
        await modern(server, "resources/read", {"uri": "mem://asks"})
    assert set(caught.value.requests) == {"k"}


def test_cache_hints_are_validated() -> None:
    assert CacheHint().to_json() == {"ttlMs": 0, "cacheScope": "private"}
    for bad_ttl in (1.5, True, "10", None):
        with pytest.raises(TypeError):
            CacheHint(bad_ttl)  # type: ignore[arg-type]
    for bad_ttl in (-1, 2**53):
        with pytest.raises(ValueError, match="ttl_ms"):
            CacheHint(bad_ttl)
    with pytest.raises(ValueError, match="scope"):
        CacheHint(0, "shared")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tools/call"):
        McpServer("x", cache_hints={"tools/call": CacheHint()})
    with pytest.raises(TypeError):
        McpServer("x", cache={"ttlMs": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        McpServer("x", cache_hints={"tools/list": 5})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        McpServer("x").resource("mem://x", cache=60)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        CacheHint().ttl_ms = 5  # type: ignore[misc]


@given(st.integers(), st.sampled_from(["public", "private", "Public", "", "shared"]))
def test_a_hint_is_exactly_the_wire_fields_or_refused(ttl: int, scope: str) -> None:
    valid = 0 <= ttl <= 2**53 - 1 and scope in ("public", "private")
    try:
        hint = CacheHint(ttl, scope)  # type: ignore[arg-type]
    except ValueError:
        assert not valid
    else:
        assert valid
        assert hint.to_json() == {"ttlMs": ttl, "cacheScope": scope}


# -- 4. resource not found ------------------------------------------------------------------------


async def test_resource_not_found_is_invalid_params_with_the_uri_at_2026() -> None:
    server = make_server()
    uri = "test://nonexistent-resource-for-conformance-testing"
    with pytest.raises(McpError) as caught:
        await modern(server, "resources/read", {"uri": uri})
    assert (caught.value.code, caught.value.data) == (INVALID_PARAMS, {"uri": uri})
    # A resource's own "not found" is translated too, its data kept.
    with pytest.raises(McpError) as caught:
        await modern(server, "resources/read", {"uri": "mem://gone"})
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.data == {"uri": "mem://gone", "why": "deleted"}
    assert caught.value.message == "Resource vanished"


async def test_resource_not_found_keeps_its_handshake_era_answer() -> None:
    server = make_server()
    with pytest.raises(McpError) as caught:
        await handshake(server, "resources/read", {"uri": "mem://nope"})
    assert (caught.value.code, caught.value.data) == (RESOURCE_NOT_FOUND, {"uri": "mem://nope"})
    with pytest.raises(McpError) as caught:
        await handshake(server, "resources/read", {"uri": "mem://gone"})
    assert (caught.value.code, caught.value.data) == (RESOURCE_NOT_FOUND, {"why": "deleted"})


# -- 5. x-mcp-header ------------------------------------------------------------------------------


async def test_mcp_header_annotations_reach_the_schema_and_the_lookup() -> None:
    server = make_server()

    @server.tool()
    def nested(where: Where, flag: Annotated[bool, McpHeader("Flag")] = False) -> str:
        return where["zone"]

    @server.tool(
        input_schema={
            "type": "object",
            "properties": {"tenant": {"type": "integer", "x-mcp-header": "Tenant"}},
        }
    )
    def explicit(tenant: int = 0) -> str:
        return str(tenant)

    assert server.param_headers("query") == {("region",): ("Region", "string")}
    assert server.param_headers("nested") == {
        ("where", "region"): ("Region", "string"),
        ("flag",): ("Flag", "boolean"),
    }
    assert server.param_headers("explicit") == {("tenant",): ("Tenant", "integer")}
    assert server.param_headers("tagged") == {}
    assert server.param_headers("no-such-tool") == {}
    server.param_headers("query").clear()  # a copy: the tool's stays
    assert server.param_headers("query")
    for answer in (await modern(server, "tools/list"), await handshake(server, "tools/list")):
        tools = {tool["name"]: tool for tool in answer["tools"]}
        region = tools["query"]["inputSchema"]["properties"]["region"]
        assert region == {"type": "string", "x-mcp-header": "Region"}
        assert tools["explicit"]["inputSchema"]["properties"]["tenant"]["x-mcp-header"] == "Tenant"


def test_what_the_transport_checks_with_the_lookup() -> None:
    server = make_server()
    annotations = server.param_headers("query")
    arguments = {"region": "eu-west", "sql": "select 1"}
    check_param_headers(annotations, arguments, RoutingHeaders(params={"region": "eu-west"}), 1)
    for sent in ({}, {"region": "us-east"}, {"region": "=?base64?!!?="}):
        with pytest.raises(ProtocolError) as caught:
            check_param_headers(annotations, arguments, RoutingHeaders(params=sent), 1)
        assert caught.value.code == HEADER_MISMATCH


@pytest.mark.parametrize(
    ("annotation", "match"),
    [
        (Annotated[float, McpHeader("Ratio")], "'number'"),
        (Annotated[str, McpHeader("Bad Name")], "HTTP token"),
        (Annotated[str, McpHeader("")], "HTTP token"),
        (Annotated[str | None, McpHeader("Maybe")], "None"),
        (Annotated[list[str], McpHeader("Many")], "'array'"),
    ],
)
def test_a_bad_mcp_header_is_refused_at_registration(annotation: Any, match: str) -> None:
    server = McpServer("x")

    def tool(value: Any) -> str:
        return ""

    tool.__annotations__ = {"value": annotation, "return": str}
    with pytest.raises(ValueError, match=match) as caught:
        server.tool()(tool)
    assert "tool 'tool'" in str(caught.value)
    assert server.param_headers("tool") == {}


def test_a_header_name_twice_or_a_bad_explicit_one_is_refused() -> None:
    server = McpServer("x")
    with pytest.raises(ValueError, match="used twice"):

        @server.tool()
        def twice(
            a: Annotated[str, McpHeader("Region")], b: Annotated[str, McpHeader("region")]
        ) -> str:
            return a + b

    with pytest.raises(ValueError, match="'number'"):
        server.tool(
            "explicit",
            input_schema={
                "type": "object",
                "properties": {"n": {"type": "number", "x-mcp-header": "N"}},
            },
        )(lambda n=0: "")
    with pytest.raises(TypeError):
        McpHeader(5)  # type: ignore[arg-type]
    assert server.discover_result()["capabilities"] == {"logging": {}}


# -- 6. what a tool raises for the runner ---------------------------------------------------------


async def test_input_required_and_missing_capability_go_through_tools_call() -> None:
    server = make_server()
    with pytest.raises(InputRequired) as asked:
        await modern(server, "tools/call", {"name": "asks"}, capabilities={"elicitation": {}})
    assert set(asked.value.requests) == {"user_name"}
    with pytest.raises(MissingClientCapability) as missing:
        await modern(server, "tools/call", {"name": "needs_sampling"})
    assert missing.value.code == -32021
    assert missing.value.data == {"requiredCapabilities": {"sampling": {}}}
    # The same tools in the handshake era: the same exceptions, for the session's mapping.
    with pytest.raises(InputRequired):
        await handshake(server, "tools/call", {"name": "asks"})
    with pytest.raises(MissingClientCapability):
        await handshake(server, "tools/call", {"name": "needs_sampling"})


# -- 7. lists are never input_required ------------------------------------------------------------


async def test_lists_are_complete_whatever_the_client_declared() -> None:
    server = make_server()
    everything: dict[str, Any] = {"elicitation": {}, "sampling": {}, "roots": {}}
    for capabilities in ({}, everything):
        for method in ("server/discover", *LISTS):
            result = await modern(server, method, capabilities=capabilities)
            assert result["resultType"] == "complete"
            assert not {"inputRequests", "requestState"} & set(result)


# -- 8. JSON Schema 2020-12 -----------------------------------------------------------------------


async def test_an_explicit_2020_12_schema_reaches_tools_list_intact_in_both_eras() -> None:
    server = make_server()
    for answer in (await modern(server, "tools/list"), await handshake(server, "tools/list")):
        tools = {tool["name"]: tool for tool in answer["tools"]}
        assert tools["json_schema_2020_12_tool"]["inputSchema"] == SCHEMA_2020_12
    called = await modern(
        server, "tools/call", {"name": "json_schema_2020_12_tool", "arguments": {"name": "z"}}
    )
    assert called["content"] == [{"type": "text", "text": "z"}]


# -- the handshake era, as it was -----------------------------------------------------------------


async def test_handshake_era_results_are_unchanged() -> None:
    server = make_server(cache=CacheHint(9, "public"))
    listed = await handshake(server, "tools/list")
    assert set(listed) == {"tools"}
    assert await handshake(server, "resources/read", {"uri": "mem://items/b"}) == {
        "contents": [{"uri": "mem://items/b", "text": "b"}]
    }
    assert await handshake(
        server, "prompts/get", {"name": "greet", "arguments": {"name": "b"}}
    ) == {
        "messages": [{"role": "user", "content": {"type": "text", "text": "Hello b"}}],
        "description": "Greet someone.",
    }
    assert await handshake(server, "custom/echo", {"x": 1}) == {"echo": 1, "_meta": {"app/own": 1}}
    for method in LISTS:
        result = await handshake(server, method)
        assert not {"resultType", "ttlMs", "cacheScope", "_meta"} & set(result), method
    assert await handshake(server, "resources/templates/list") == {
        "resourceTemplates": [{"name": "item", "uriTemplate": "mem://items/{item}"}]
    }
