"""The native server API: schemas from type hints, dispatch, results (no HTTP)."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal, TypedDict

import pytest

from _peers import FakePeer
from trio_mcp_sessions import (
    Context,
    McpError,
    McpServer,
    Peer,
    Request,
    ToolError,
    ToolResult,
)
from trio_mcp_sessions._protocol._jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from trio_mcp_sessions._protocol._lifecycle import parse_initialize
from trio_mcp_sessions._server._schema import parse_docstring, schema_for_type, validate


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: int
    y: int


def make_server() -> McpServer:
    server = McpServer("api", "2.0", instructions="be nice", title="API")

    @server.tool()
    async def area(width: float, height: float = 1.0) -> float:
        """Area of a rectangle.

        Args:
            width: The width,
                in metres.
            height: The height.
        """
        return width * height

    @server.tool(name="fail")
    def failing() -> str:
        """Always fails."""
        raise ToolError("nope")

    @server.tool()
    def crash() -> str:
        """A bug."""
        raise KeyError("boom")

    @server.tool()
    def structured(point: Point, color: Color = Color.RED) -> dict[str, Any]:
        """Returns structured content."""
        assert isinstance(color, Color)
        return {"point": point, "color": color}

    @server.tool(input_schema={"type": "object", "properties": {"q": {"type": "string"}}})
    def explicit(q: str = "") -> ToolResult:
        """Explicit schema."""
        return ToolResult([{"type": "text", "text": q}], structured_content={"q": q})

    @server.resource("mem://greeting", mime_type="text/plain")
    def greeting() -> str:
        """A greeting."""
        return "hello"

    @server.resource("mem://users/{user_id}/avatar", mime_type="image/png")
    def avatar(user_id: str) -> bytes:
        return user_id.encode()

    @server.prompt()
    def review(code: str, language: str = "python") -> str:
        """Review code.

        Args:
            code: The code to review.
        """
        return f"Review this {language}: {code}"

    return server


async def handle(server: McpServer, method: str, params: dict[str, Any] | None = None) -> Any:
    peer = FakePeer()
    ctx = Context(peer, 1, None)
    return await server.handle_request(Request(1, method, params), ctx, peer)


def test_docstring_parsing() -> None:
    description, args = parse_docstring(
        """Summary line.

        More text.

        Args:
            a: First
                continued.
            b (int): Second.

        Returns:
            Something.
        """
    )
    assert description == "Summary line.\n\nMore text."
    assert args == {"a": "First continued.", "b": "Second."}


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (bool, {"type": "boolean"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Literal["a", "b"], {"enum": ["a", "b"], "type": "string"}),
        (Color, {"enum": ["red", "blue"], "type": "string"}),
        (Annotated[int, "how many"], {"type": "integer", "description": "how many"}),
        (Any, {}),
        (
            Point,
            {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                "required": ["x", "y"],
            },
        ),
    ],
)
def test_schema_for_type(annotation: Any, schema: dict[str, Any]) -> None:
    assert schema_for_type(annotation) == schema


def test_schema_for_unknown_type_asks_for_an_explicit_schema() -> None:
    with pytest.raises(TypeError, match="explicit schema"):
        schema_for_type(complex)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"width": 2}, None),
        ({"width": "2"}, "width: expected number, got str"),
        ({}, "width: required argument missing"),
        ({"width": 1, "depth": 3}, "depth: unexpected argument"),
        ({"width": True}, "width: expected number, got bool"),
    ],
)
async def test_validate(value: dict[str, Any], problem: str | None) -> None:
    tools = (await handle(make_server(), "tools/list"))["tools"]
    (schema,) = [t["inputSchema"] for t in tools if t["name"] == "area"]
    assert validate(value, schema) == problem


async def test_tools_list_derives_schemas_from_hints_and_docstrings() -> None:
    tools = {t["name"]: t for t in (await handle(make_server(), "tools/list"))["tools"]}
    area = tools["area"]
    assert area["description"] == "Area of a rectangle."
    assert area["inputSchema"] == {
        "type": "object",
        "properties": {
            "width": {"type": "number", "description": "The width, in metres."},
            "height": {"type": "number", "description": "The height.", "default": 1.0},
        },
        "required": ["width"],
        "additionalProperties": False,
    }
    assert tools["explicit"]["inputSchema"] == {
        "type": "object",
        "properties": {"q": {"type": "string"}},
    }
    assert set(tools) == {"area", "fail", "crash", "structured", "explicit"}


async def test_tool_results_and_errors() -> None:
    server = make_server()
    result = await handle(server, "tools/call", {"name": "area", "arguments": {"width": 3}})
    assert result == {"content": [{"type": "text", "text": "3.0"}]}
    result = await handle(server, "tools/call", {"name": "fail"})
    assert result == {"content": [{"type": "text", "text": "nope"}], "isError": True}
    result = await handle(server, "tools/call", {"name": "crash", "arguments": {}})
    assert result["isError"] is True
    assert "KeyError" in result["content"][0]["text"]
    result = await handle(server, "tools/call", {"name": "area", "arguments": {"width": "x"}})
    assert result["isError"] is True
    assert "expected number" in result["content"][0]["text"]
    result = await handle(
        server, "tools/call", {"name": "structured", "arguments": {"point": {"x": 1, "y": 2}}}
    )
    assert result["structuredContent"] == {"point": {"x": 1, "y": 2}, "color": "red"}
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    result = await handle(
        server,
        "tools/call",
        {"name": "structured", "arguments": {"point": {"x": 1, "y": 2}, "color": "blue"}},
    )
    assert result["structuredContent"]["color"] == "blue"  # arrived as Color.BLUE
    result = await handle(server, "tools/call", {"name": "explicit", "arguments": {"q": "hi"}})
    assert result == {"content": [{"type": "text", "text": "hi"}], "structuredContent": {"q": "hi"}}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"name": "missing"}, INVALID_PARAMS),
        ({"name": 3}, INVALID_PARAMS),
        ({"name": "area", "arguments": [1]}, INVALID_PARAMS),
    ],
)
async def test_tool_protocol_errors(params: dict[str, Any], code: int) -> None:
    with pytest.raises(McpError) as caught:
        await handle(make_server(), "tools/call", params)
    assert caught.value.code == code


async def test_resources_and_templates() -> None:
    server = make_server()
    listed = await handle(server, "resources/list")
    assert listed == {
        "resources": [
            {
                "name": "greeting",
                "description": "A greeting.",
                "mimeType": "text/plain",
                "uri": "mem://greeting",
            }
        ]
    }
    templates = await handle(server, "resources/templates/list")
    assert templates["resourceTemplates"][0]["uriTemplate"] == "mem://users/{user_id}/avatar"
    read = await handle(server, "resources/read", {"uri": "mem://greeting"})
    assert read == {
        "contents": [{"uri": "mem://greeting", "text": "hello", "mimeType": "text/plain"}]
    }
    read = await handle(server, "resources/read", {"uri": "mem://users/ab/avatar"})
    assert read["contents"][0]["blob"] == "YWI="
    with pytest.raises(McpError) as caught:
        await handle(server, "resources/read", {"uri": "mem://users/a/b/avatar"})
    assert caught.value.code == -32002


async def test_prompts() -> None:
    server = make_server()
    listed = await handle(server, "prompts/list")
    assert listed["prompts"][0]["arguments"] == [
        {"name": "code", "required": True, "description": "The code to review."},
        {"name": "language", "required": False},
    ]
    got = await handle(server, "prompts/get", {"name": "review", "arguments": {"code": "x=1"}})
    assert got["messages"] == [
        {"role": "user", "content": {"type": "text", "text": "Review this python: x=1"}}
    ]
    for params in (
        {"name": "review"},
        {"name": "review", "arguments": {"code": "", "x": 1}},
        {"name": "nope"},
    ):
        with pytest.raises(McpError) as caught:
            await handle(server, "prompts/get", params)
        assert caught.value.code == INVALID_PARAMS


async def test_remove_tool_and_prompt() -> None:
    """A removed tool or prompt leaves the list and can no longer be called."""
    server = make_server()
    assert server.remove_tool("area") is True
    assert server.remove_tool("area") is False
    listed = await handle(server, "tools/list")
    assert "area" not in [t["name"] for t in listed["tools"]]
    with pytest.raises(McpError) as caught:
        await handle(server, "tools/call", {"name": "area", "arguments": {"width": 1}})
    assert caught.value.code == INVALID_PARAMS
    assert server.remove_prompt("review") is True
    assert server.remove_prompt("review") is False
    assert (await handle(server, "prompts/list"))["prompts"] == []
    with pytest.raises(McpError):
        await handle(server, "prompts/get", {"name": "review", "arguments": {"code": "x"}})


async def test_logging_subscriptions_completion_ping_and_unknown_methods() -> None:
    server = make_server()
    session: Peer = FakePeer()
    ctx = Context(session, 1, None)
    assert (
        await server.handle_request(
            Request(1, "logging/setLevel", {"level": "error"}), ctx, session
        )
        == {}
    )
    assert session.log_level == "error"
    with pytest.raises(McpError):
        await server.handle_request(Request(1, "logging/setLevel", {"level": "loud"}), ctx, session)
    await server.handle_request(
        Request(1, "resources/subscribe", {"uri": "mem://greeting"}), ctx, session
    )
    assert session.subscriptions == {"mem://greeting"}
    await server.handle_request(
        Request(1, "resources/unsubscribe", {"uri": "mem://greeting"}), ctx, session
    )
    assert session.subscriptions == set()
    assert await handle(server, "ping") == {}
    completion = await handle(
        server,
        "completion/complete",
        {
            "ref": {"type": "ref/prompt", "name": "review"},
            "argument": {"name": "code", "value": ""},
        },
    )
    assert completion == {"completion": {"values": [], "total": 0, "hasMore": False}}
    with pytest.raises(McpError) as caught:
        await handle(server, "no/such/method")
    assert caught.value.code == METHOD_NOT_FOUND


async def test_initialize_result_and_capabilities() -> None:
    server = make_server()
    seen: list[bool] = []
    server.on_initialize(lambda client, restored: seen.append(restored))
    client = parse_initialize(
        Request(
            1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {}}
        )
    )
    result = await server.initialize(client, is_restored=False)
    assert result["protocolVersion"] == "2025-06-18"
    assert result["serverInfo"] == {"name": "api", "version": "2.0", "title": "API"}
    assert result["instructions"] == "be nice"
    assert set(result["capabilities"]) == {
        "logging",
        "tools",
        "resources",
        "prompts",
        "completions",
    }
    assert result["capabilities"]["resources"]["subscribe"] is True
    assert seen == [False]
