"""The built-in methods that call user code: tools, resources, prompts, completions.

:class:`~._server.McpServer` registers what a server offers as the records
below, built from the user's function by ``*_record`` (its name, docstring,
signature and ``Context`` parameters); the other functions find the record a
request names, call its function and turn what it returns into the MCP result.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints

from .._protocol._era import param_headers_of
from .._protocol._jsonrpc import INVALID_PARAMS, RESOURCE_NOT_FOUND
from ._content import CONTENT_TYPES, ToolResult, text_content
from ._context import Context
from ._errors import McpError, failure
from ._schema import parse_docstring, signature_schema, validate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._caching import CacheHint

__all__ = [
    "RegisteredPrompt",
    "RegisteredResource",
    "RegisteredTool",
    "call_tool",
    "complete",
    "get_prompt",
    "prompt_record",
    "read_resource",
    "resource_record",
    "tool_record",
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
    #: OAuth scopes a call needs beyond the resource server's own (``scopes=``).
    scopes: frozenset[str] = frozenset()


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


# -- registration: from a user's function to its record -------------------------------


def _context_params(fn: Callable[..., Any]) -> frozenset[str]:
    try:
        hints = get_type_hints(fn, localns={"Context": Context})
    except Exception:  # unresolvable annotations: fall back to the raw ones
        hints = getattr(fn, "__annotations__", {})
    return frozenset(name for name, hint in hints.items() if hint is Context or hint == "Context")


def _enum_params(fn: Callable[..., Any]) -> dict[str, type[enum.Enum]]:
    try:
        hints = get_type_hints(fn)
    except Exception:
        return {}
    return {
        name: hint
        for name, hint in hints.items()
        if isinstance(hint, type) and issubclass(hint, enum.Enum)
    }


_TEMPLATE_VAR = re.compile(r"\{(\+?)([A-Za-z_][A-Za-z0-9_]*)\}")


def _template_regex(template: str) -> re.Pattern[str]:
    pos = 0
    parts: list[str] = []
    for match in _TEMPLATE_VAR.finditer(template):
        parts.append(re.escape(template[pos : match.start()]))
        body = ".+" if match.group(1) else "[^/?#]+"
        parts.append(f"(?P<{match.group(2)}>{body})")
        pos = match.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts) + r"\Z")


def _introspect(
    fn: Callable[..., Any], name: str | None
) -> tuple[str, str, dict[str, str], frozenset[str]]:
    """What every record reads from *fn*: its name, docstring, ``Args:`` docs, Context params."""
    doc, arg_docs = parse_docstring(fn.__doc__)
    return name or fn.__name__, doc, arg_docs, _context_params(fn)


def _put(definition: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """*definition* with the optional *fields* that were given (not ``None``), in order."""
    definition.update((key, value) for key, value in fields.items() if value is not None)
    return definition


def tool_record(
    fn: Callable[..., Any],
    name: str | None,
    *,
    description: str | None,
    title: str | None,
    input_schema: dict[str, Any] | None,
    output_schema: dict[str, Any] | None,
    annotations: dict[str, Any] | None,
    meta: dict[str, Any] | None,
    scopes: frozenset[str] = frozenset(),
) -> RegisteredTool:
    """The record of ``@server.tool()``; a ValueError for an ``x-mcp-header`` out of the rules."""
    tool_name, doc, arg_docs, ctx_params = _introspect(fn, name)
    schema, params = signature_schema(fn, skip=ctx_params, arg_docs=arg_docs)
    definition: dict[str, Any] = {
        "name": tool_name,
        "description": description if description is not None else doc,
        "inputSchema": input_schema if input_schema is not None else schema,
    }
    _put(definition, title=title, outputSchema=output_schema, annotations=annotations, _meta=meta)
    try:
        param_headers = param_headers_of(definition["inputSchema"])
    except ValueError as exc:
        raise ValueError(f"tool {tool_name!r}: {exc}") from None
    return RegisteredTool(
        tool_name,
        fn,
        definition,
        ctx_params,
        input_schema is None,
        frozenset(params),
        _enum_params(fn),
        param_headers,
        scopes,
    )


def resource_record(
    fn: Callable[..., Any],
    uri: str,
    *,
    name: str | None,
    description: str | None,
    mime_type: str | None,
    title: str | None,
    cache: CacheHint | None,
) -> RegisteredResource:
    """The record of ``@server.resource()``: a template (with a pattern) if *uri* has variables."""
    resource_name, doc, _, ctx_params = _introspect(fn, name)
    definition = _put(
        {"name": resource_name},
        title=title,
        description=description if description is not None else (doc or None),
        mimeType=mime_type,
    )
    if _TEMPLATE_VAR.search(uri):
        definition["uriTemplate"] = uri
        return RegisteredResource(uri, fn, definition, ctx_params, _template_regex(uri), cache)
    definition["uri"] = uri
    return RegisteredResource(uri, fn, definition, ctx_params, cache=cache)


def prompt_record(
    fn: Callable[..., Any], name: str | None, *, description: str | None, title: str | None
) -> RegisteredPrompt:
    """The record of ``@server.prompt()``: its parameters (but Context ones) are its arguments."""
    prompt_name, doc, arg_docs, ctx_params = _introspect(fn, name)
    arguments: list[dict[str, Any]] = []
    names: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.name in ctx_params or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        argument: dict[str, Any] = {"name": param.name, "required": param.default is param.empty}
        if param.name in arg_docs:
            argument["description"] = arg_docs[param.name]
        arguments.append(argument)
        names.append(param.name)
    definition: dict[str, Any] = {
        "name": prompt_name,
        "description": description if description is not None else doc,
        "arguments": arguments,
    }
    _put(definition, title=title)
    return RegisteredPrompt(prompt_name, fn, definition, ctx_params, names)


# -- the built-in methods ----------------------------------------------------------------


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
