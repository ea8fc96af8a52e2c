"""The built-in methods that call user code: tools, resources, prompts, completions.

:class:`~._server.McpServer` registers what a server offers as the records
below; these functions find the record a request names, call its function and
turn what it returns into the MCP result.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._protocol._jsonrpc import INVALID_PARAMS, RESOURCE_NOT_FOUND
from ._content import CONTENT_TYPES, ToolResult, text_content
from ._errors import McpError, failure
from ._schema import validate

if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Mapping, Sequence

    from ._caching import CacheHint
    from ._context import Context

__all__ = [
    "RegisteredPrompt",
    "RegisteredResource",
    "RegisteredTool",
    "call_tool",
    "complete",
    "get_prompt",
    "read_resource",
]

logger = logging.getLogger("trio_mcp_sessions.server")


@dataclass(slots=True)
class RegisteredTool:
    name: str
    fn: Callable[..., Any]
    definition: dict[str, Any]
    context_params: frozenset[str]
    validate_args: bool
    param_names: frozenset[str]
    #: Parameters annotated with an Enum: their JSON values become members.
    enum_params: dict[str, type[enum.Enum]] = field(default_factory=dict)
    #: The schema's ``x-mcp-header`` parameters: ``{path: (header name, type)}``.
    param_headers: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class RegisteredResource:
    uri: str
    fn: Callable[..., Any]
    definition: dict[str, Any]
    context_params: frozenset[str]
    #: Set for a template: matches the URIs it serves, variables as groups.
    pattern: re.Pattern[str] | None = None
    #: The caching hint of its reads at 2026-07-28 (``None``: the server's).
    cache: CacheHint | None = None


@dataclass(slots=True)
class RegisteredPrompt:
    name: str
    fn: Callable[..., Any]
    definition: dict[str, Any]
    context_params: frozenset[str]
    param_names: list[str] = field(default_factory=list)


async def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _json_default(value: Any) -> Any:
    """Make common Python values JSON: enums by value, dataclasses, sets."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def _to_content_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [text_content(value)]
    if isinstance(value, dict) and value.get("type") in CONTENT_TYPES:
        return [value]
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, dict) and v.get("type") in CONTENT_TYPES for v in value
    ):
        return list(value)
    return [text_content(json.dumps(value, ensure_ascii=False, default=_json_default))]


def _error_result(text: str) -> dict[str, Any]:
    return ToolResult([text_content(text)], is_error=True).to_json()


async def call_tool(
    tools: Mapping[str, RegisteredTool], ctx: Context, params: dict[str, Any]
) -> dict[str, Any]:
    """``tools/call``: a bad call is a JSON-RPC error, a failing tool an ``isError`` result."""
    name = params.get("name")
    if not isinstance(name, str):
        raise McpError(INVALID_PARAMS, "tools/call: name must be a string")
    tool = tools.get(name)
    if tool is None:
        raise McpError(INVALID_PARAMS, f"Unknown tool: {name}")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise McpError(INVALID_PARAMS, "tools/call: arguments must be an object")
    if tool.validate_args:
        problem = validate(arguments, tool.definition["inputSchema"])
        if problem is not None:
            return _error_result(f"Invalid arguments: {problem}")
        kwargs = {
            key: tool.enum_params[key](value) if key in tool.enum_params else value
            for key, value in arguments.items()
        }
    else:
        # Explicit schema: the function takes what it names; missing
        # arguments are up to its defaults (a TypeError becomes isError).
        kwargs = {k: v for k, v in arguments.items() if k in tool.param_names}
    for param in tool.context_params:
        kwargs[param] = ctx
    try:
        value = await _call(tool.fn, kwargs)
    except Exception as exc:  # Cancelled is not an Exception: it goes through
        answer = failure(exc, tool=True)
        if not answer.in_result:
            raise
        if answer.log == "traceback":
            logger.exception("tool %r failed", name)
        elif answer.log == "warning":
            logger.warning("tool %r raised %s: %s", name, type(exc).__name__, exc)
        return _error_result(answer.message)
    if isinstance(value, ToolResult):
        return value.to_json()
    if isinstance(value, dict) and value.get("type") not in CONTENT_TYPES:
        structured = _to_json(value)
        return {
            "content": [text_content(json.dumps(structured, ensure_ascii=False))],
            "structuredContent": structured,
        }
    return {"content": _to_content_list(value)}


async def read_resource(
    resources: Mapping[str, RegisteredResource],
    templates: Sequence[RegisteredResource],
    ctx: Context,
    params: dict[str, Any],
) -> tuple[dict[str, Any], RegisteredResource]:
    """``resources/read``: a fixed URI first, else the first template that matches.

    Returns:
        The result, and the resource (or template) that answered it.
    """
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise McpError(INVALID_PARAMS, "resources/read: uri must be a string")
    resource = resources.get(uri)
    kwargs: dict[str, Any] = {}
    if resource is None:
        for template in templates:
            assert template.pattern is not None
            match = template.pattern.match(uri)
            if match:
                resource = template
                kwargs = match.groupdict()
                break
    if resource is None:
        raise McpError(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})
    for param in resource.context_params:
        kwargs[param] = ctx
    value = await _call(resource.fn, kwargs)
    mime = resource.definition.get("mimeType")
    if isinstance(value, str):
        contents = [{"uri": uri, "text": value}]
    elif isinstance(value, (bytes, bytearray)):
        contents = [{"uri": uri, "blob": base64.b64encode(value).decode("ascii")}]
    elif isinstance(value, dict):
        contents = [value]
    else:
        contents = list(value)
    for item in contents:
        item.setdefault("uri", uri)
        if mime is not None:
            item.setdefault("mimeType", mime)
    return {"contents": contents}, resource


async def get_prompt(
    prompts: Mapping[str, RegisteredPrompt], ctx: Context, params: dict[str, Any]
) -> dict[str, Any]:
    """``prompts/get``: the arguments checked against the prompt's, the result as messages."""
    name = params.get("name")
    prompt = prompts.get(name) if isinstance(name, str) else None
    if prompt is None:
        raise McpError(INVALID_PARAMS, f"Unknown prompt: {name}")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise McpError(INVALID_PARAMS, "prompts/get: arguments must be an object")
    missing = [
        a["name"]
        for a in prompt.definition["arguments"]
        if a["required"] and a["name"] not in arguments
    ]
    if missing:
        raise McpError(INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}")
    unknown = sorted(set(arguments) - set(prompt.param_names))
    if unknown:
        raise McpError(INVALID_PARAMS, f"Unknown arguments: {', '.join(unknown)}")
    kwargs = dict(arguments)
    for param in prompt.context_params:
        kwargs[param] = ctx
    value = await _call(prompt.fn, kwargs)
    if isinstance(value, dict) and "messages" in value:
        return value
    items = [value] if isinstance(value, (str, dict)) else list(value)
    messages: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            messages.append({"role": "user", "content": text_content(item)})
        elif isinstance(item, dict) and "role" in item:
            messages.append(item)
        else:
            messages.append({"role": "user", "content": item})
    result: dict[str, Any] = {"messages": messages}
    if prompt.definition.get("description"):
        result["description"] = prompt.definition["description"]
    return result


async def complete(completion: Callable[..., Any] | None, params: dict[str, Any]) -> dict[str, Any]:
    """``completion/complete``: no handler registered answers no values."""
    ref = params.get("ref")
    argument = params.get("argument")
    if not isinstance(ref, dict) or not isinstance(argument, dict):
        raise McpError(INVALID_PARAMS, "completion/complete: ref and argument are required")
    values: Any = []
    if completion is not None:
        values = await _call(
            completion, {"ref": ref, "argument": argument, "context": params.get("context")}
        )
    if isinstance(values, dict):
        return {"completion": values}
    values = [str(v) for v in values][:100]
    return {"completion": {"values": values, "total": len(values), "hasMore": False}}
