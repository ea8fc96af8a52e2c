"""Everything the official MCP conformance suite's server scenarios call, on our stack.

Run it with::

    python examples/conformance_server.py --port 3311
    # or: python -m trio_mcp_sessions serve examples/conformance_server.py:app

The names and data follow the suite's reference ("everything") servers. Every
handler serves both eras: in a session (2025 revisions) ``ctx.elicit``,
``ctx.sample`` and ``ctx.list_roots`` are server-to-client requests; at
2026-07-28 they become input-required rounds, with the same code.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Annotated, Any

import trio

from trio_mcp_sessions import (
    BoundedSessionManager,
    Context,
    InputRequest,
    McpHeader,
    McpServer,
    StreamableHTTPApp,
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
#: The app that serves ``server``: the list-change tools notify through its manager.
app = StreamableHTTPApp(server, retry_ms=100)


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


JSON_SCHEMA_2020_12_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@server.tool(input_schema=JSON_SCHEMA_2020_12_INPUT_SCHEMA)
def json_schema_2020_12_tool(name: str = "", address: dict[str, Any] | None = None) -> str:
    """A tool whose input schema uses JSON Schema 2020-12 features (kept as written)."""
    return f"Hello {name or 'anonymous'} from {(address or {}).get('city', 'nowhere')}"


# -- 2026-07-28 diagnostics (server-stateless, http-custom-header-server-validation) ----


@server.tool()
def test_x_mcp_header(region: Annotated[str, McpHeader("Region")] = "<none>") -> str:  # noqa: PT028
    """Mirrors its argument into the Mcp-Param-Region header (SEP-2243).

    Args:
        region: A region name, also sent as the Mcp-Param-Region header.
    """
    return f"region={region}"


@server.tool()
async def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability: without it the call fails with -32021."""
    result = await ctx.sample("Say hello", max_tokens=20, key="sample")
    return f"Client declared sampling; the model said: {_sampled_text(result)}"


@server.tool()
async def test_streaming_elicitation(ctx: Context) -> str:
    """Reports progress, then asks the user: never a request on the response stream."""
    await ctx.report_progress(0, 1, "asking the user")
    answer = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
    await ctx.report_progress(1, 1, "answered")
    return f"Hello, {_content(answer).get('name', 'stranger')}!"


@server.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Logs three messages: only a request that asked for a log level gets them."""
    for text in ("Logging tool started", "Logging tool working", "Logging tool done"):
        await ctx.info(text)
    return "Logging tool finished"


def _dynamic() -> str:
    """Registered and removed again by the list-change tools."""
    return "dynamic"


async def _notify_all(method: str) -> None:
    manager = app.manager
    if isinstance(manager, BoundedSessionManager):
        await manager.notify_all(method)


@server.tool()
async def test_trigger_tool_change() -> str:
    """Changes the tool list, then tells every session and listen stream (SEP-2575)."""
    server.tool("test_dynamic_tool")(_dynamic)
    server.remove_tool("test_dynamic_tool")
    await _notify_all("notifications/tools/list_changed")
    return "tool list changed"


@server.tool()
async def test_trigger_prompt_change() -> str:
    """Changes the prompt list, then tells every session and listen stream (SEP-2575)."""
    server.prompt("test_dynamic_prompt")(_dynamic)
    server.remove_prompt("test_dynamic_prompt")
    await _notify_all("notifications/prompts/list_changed")
    return "prompt list changed"


# -- input-required results (SEP-2322): one handler per fixture, both eras --------------

NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}


def _content(elicit_result: dict[str, Any]) -> dict[str, Any]:
    content = elicit_result.get("content")
    return content if isinstance(content, dict) else {}


def _sampled_text(result: dict[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        content = content[0] if content else {}
    text = content.get("text") if isinstance(content, dict) else None
    return text if isinstance(text, str) else "?"


@server.tool()
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """Asks the user for their name (one elicitation)."""
    answer = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
    return f"Hello, {_content(answer).get('name', 'stranger')}!"


@server.tool()
async def test_input_required_result_sampling(ctx: Context) -> str:
    """Asks the client's model a question (one sampling request)."""
    answer = await ctx.sample(
        "What is the capital of France?", max_tokens=100, key="capital_question"
    )
    return f"Model said: {_sampled_text(answer)}"


@server.tool()
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """Asks for the client's roots."""
    roots = await ctx.list_roots(key="client_roots")
    uris = ", ".join(str(root.get("uri")) for root in roots if isinstance(root, dict))
    return f"Client exposed {len(roots)} root(s): {uris}"


@server.tool()
async def test_input_required_result_request_state(ctx: Context) -> str:
    """Asks for a confirmation; the answer comes back with our sealed requestState."""
    answer = await ctx.elicit("Please confirm", CONFIRM_SCHEMA, key="confirm")
    return f"state-ok: confirmed={_content(answer).get('ok')}"


@server.tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """Asks three questions at once: an elicitation, a sampling and roots."""
    answers = await ctx.request_input(
        {
            "user_name": InputRequest.elicitation("What is your name?", NAME_SCHEMA),
            "greeting": InputRequest.sampling("Generate a greeting", max_tokens=50),
            "client_roots": InputRequest.roots(),
        }
    )
    name = _content(answers["user_name"]).get("name", "stranger")
    greeting = _sampled_text(answers["greeting"])
    roots = answers["client_roots"].get("roots", [])
    count = len(roots) if isinstance(roots, list) else 0
    return f"All inputs received: {greeting} {name} ({count} root(s))"


@server.tool()
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Asks two questions one after the other (two rounds, then the answer)."""
    name = _content(await ctx.elicit("Step 1: What is your name?", NAME_SCHEMA, key="step1"))
    color_schema = {
        "type": "object",
        "properties": {"color": {"type": "string"}},
        "required": ["color"],
    }
    color = _content(
        await ctx.elicit("Step 2: What is your favorite color?", color_schema, key="step2")
    )
    return f"{name.get('name')} likes {color.get('color')}."


@server.tool()
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """Asks for a confirmation; a tampered requestState is refused before this runs again."""
    answer = await ctx.elicit("Please confirm", CONFIRM_SCHEMA, key="confirm")
    return f"state-ok: confirmed={_content(answer).get('ok')}"


@server.tool()
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Asks only what the client can answer: sampling and elicitation as declared."""
    requests: dict[str, InputRequest] = {}
    if ctx.client.has_capability("sampling"):
        requests["sample"] = InputRequest.sampling("Say hello", max_tokens=50)
    if ctx.client.has_capability("elicitation", "form"):
        requests["ask"] = InputRequest.elicitation("What is your name?", NAME_SCHEMA)
    answers = await ctx.request_input(requests) if requests else {}
    return f"Answered: {', '.join(sorted(answers)) or 'nothing to ask'}"


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


@server.prompt()
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that asks the user for its context first (input required on prompts/get)."""
    answer = await ctx.elicit(
        "What context should the prompt use?",
        {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]},
        key="user_context",
    )
    return f"Use the following context: {_content(answer).get('context', '?')}"


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
                    app, bind=f"{args.host}:{args.port}", task_status=task_status
                )
            )
            print(f"conformance server on {urls[0]}/mcp", flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
