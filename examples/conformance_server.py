"""Everything the official MCP conformance suite's server scenarios call, on our stack.

Run it with::

    python examples/conformance_server.py --port 3311
    # or: python -m trio_mcp_sessions serve examples/conformance_server.py:server

The names and data follow the suite's reference ("everything") server.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import trio

from trio_mcp_sessions import (
    Context,
    McpServer,
    ToolError,
    audio_content,
    embedded_resource,
    image_content,
    serve,
    text_content,
)

TEST_IMAGE_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0g"  # 1x1 PNG
    "AAAABJRU5ErkJggg=="
)
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

server = McpServer("trio-mcp-conformance-server", "1.0.0")


def _describe(prefix: str, result: dict[str, Any]) -> str:
    content = json.dumps(result.get("content", {}))
    return f"{prefix}: action={result.get('action')}, content={content}"


# -- tools ---------------------------------------------------------------------------


@server.tool()
def test_simple_text() -> str:
    """Returns a simple text content block."""
    return "This is a simple text response for testing."


@server.tool()
def test_image_content() -> dict[str, Any]:
    """Returns an image content block (a 1x1 PNG)."""
    return image_content(TEST_IMAGE_BASE64, "image/png")


@server.tool()
def test_audio_content() -> dict[str, Any]:
    """Returns an audio content block (a tiny WAV)."""
    return audio_content(TEST_AUDIO_BASE64, "audio/wav")


@server.tool()
def test_embedded_resource() -> dict[str, Any]:
    """Returns an embedded text resource."""
    return embedded_resource(
        "test://embedded-resource",
        text="This is an embedded resource content.",
        mime_type="text/plain",
    )


@server.tool()
def test_multiple_content_types() -> list[dict[str, Any]]:
    """Returns text, image and resource content together."""
    return [
        text_content("Multiple content types test:"),
        image_content(TEST_IMAGE_BASE64, "image/png"),
        embedded_resource(
            "test://mixed-content-resource",
            text=json.dumps({"test": "data", "value": 123}),
            mime_type="application/json",
        ),
    ]


@server.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three log messages while it runs."""
    await ctx.info("Tool execution started")
    await trio.sleep(0.05)
    await ctx.info("Tool processing data")
    await trio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@server.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 out of 100."""
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        if step != 100:
            await trio.sleep(0.05)
    return str(ctx.progress_token)


@server.tool()
def test_error_handling() -> str:
    """Always fails, to test tool error results."""
    raise ToolError("This tool intentionally returns an error for testing")


@server.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's model to complete a prompt.

    Args:
        prompt: The prompt to send to the model.
    """
    result = await ctx.sample(prompt, max_tokens=100)
    content = result.get("content")
    if isinstance(content, list):
        content = content[0] if content else {}
    text = content.get("text") if isinstance(content, dict) else None
    return f"LLM response: {text if text is not None else 'No response'}"


@server.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user for a free-text response.

    Args:
        message: The message to show the user.
    """
    result = await ctx.elicit(
        message,
        {
            "type": "object",
            "properties": {"response": {"type": "string", "description": "User's response"}},
            "required": ["response"],
        },
    )
    return _describe("User response", result)


@server.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicitation whose fields all have defaults (SEP-1034)."""
    result = await ctx.elicit(
        "Please provide user information",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {
                    "type": "boolean",
                    "description": "Verification status",
                    "default": True,
                },
            },
        },
    )
    return _describe("Elicitation result", result)


@server.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicitation with every enum schema shape (SEP-1330)."""
    result = await ctx.elicit(
        "Please select values using different enum schema types",
        {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Simple enum without titles",
                    "enum": ["active", "inactive", "pending"],
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Enum with titled options (oneOf)",
                    "oneOf": [
                        {"const": "low", "title": "Low Priority"},
                        {"const": "medium", "title": "Medium Priority"},
                        {"const": "high", "title": "High Priority"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Legacy enum with enumNames",
                    "enum": ["small", "medium", "large"],
                    "enumNames": ["Small Size", "Medium Size", "Large Size"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Multi-select without titles",
                    "items": {"type": "string", "enum": ["read", "write", "execute"]},
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Multi-select with titled options",
                    "items": {
                        "anyOf": [
                            {"const": "feature", "title": "New Feature"},
                            {"const": "bug", "title": "Bug Fix"},
                            {"const": "docs", "title": "Documentation"},
                        ]
                    },
                },
            },
        },
    )
    return _describe("Elicitation completed", result)


@server.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE response mid-call; the client resumes with Last-Event-ID (SEP-1699)."""
    await ctx.info("Before disconnect")
    ctx.close_sse_stream()
    await trio.sleep(0.2)
    await ctx.info("After reconnect")
    return "Reconnection test completed"


@server.tool(
    input_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }
)
def json_schema_2020_12_tool(name: str = "", address: dict[str, Any] | None = None) -> str:
    """A tool whose input schema uses JSON Schema 2020-12 features."""
    return f"Hello {name or 'anonymous'} from {(address or {}).get('city', 'nowhere')}"


# -- resources -------------------------------------------------------------------------


@server.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@server.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a PNG image)."""
    return base64.b64decode(TEST_IMAGE_BASE64)


@server.resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> str:
    """A resource template with one parameter."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.resource("test://watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients can subscribe to."""
    return "Watched resource content"


# -- prompts ---------------------------------------------------------------------------


@server.prompt()
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@server.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments.

    Args:
        arg1: First argument.
        arg2: Second argument.
    """
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[dict[str, Any]]:
    """A prompt that embeds a resource.

    Args:
        resourceUri: URI of the resource to embed.
    """
    return [
        embedded_resource(
            resourceUri, text="Embedded resource content for testing.", mime_type="text/plain"
        ),
        text_content("Please process the embedded resource above."),
    ]


@server.prompt()
def test_prompt_with_image() -> list[dict[str, Any]]:
    """A prompt that includes an image."""
    return [
        image_content(TEST_IMAGE_BASE64, "image/png"),
        text_content("Please analyze the image above."),
    ]


@server.completion()
def complete(ref: dict[str, Any], argument: dict[str, Any], context: Any) -> list[str]:
    """Suggests values for prompt arguments that start with what was typed."""
    if ref.get("name") == "test_prompt_with_arguments":
        typed = str(argument.get("value", ""))
        return [v for v in ("alpha", "beta", "gamma") if v.startswith(typed)]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3311)
    args = parser.parse_args()

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                lambda task_status: serve(
                    server, bind=f"{args.host}:{args.port}", retry_ms=100, task_status=task_status
                )
            )
            print(f"conformance server on {urls[0]}/mcp", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
