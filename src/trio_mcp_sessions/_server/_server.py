"""The native MCP server API: tools, resources, prompts, completions, logging."""

from __future__ import annotations

import base64
import dataclasses
import enum
import inspect
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, final, get_type_hints

import trio

from .._protocol._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    Notification,
    Request,
)
from ._content import (
    CONTENT_TYPES,
    ClientRequestError,
    McpError,
    ToolError,
    ToolResult,
    text_content,
)
from ._context import LOG_LEVELS, CapabilityNotSupported, Context, Peer
from ._schema import parse_docstring, signature_schema, validate

if TYPE_CHECKING:
    from .._protocol._lifecycle import ClientInfo

__all__ = ["McpServer"]

logger = logging.getLogger("trio_mcp_sessions.server")

F = TypeVar("F", bound=Callable[..., Any])
RequestHandler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
NotificationHandler = Callable[[Context, dict[str, Any]], Awaitable[None]]


async def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


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


@dataclass(slots=True)
class _Tool:
    name: str
    fn: Callable[..., Any]
    definition: dict[str, Any]
    context_params: frozenset[str]
    validate_args: bool
    param_names: frozenset[str]
    #: Parameters annotated with an Enum: their JSON values become members.
    enum_params: dict[str, type[enum.Enum]] = dataclasses.field(default_factory=dict)


@dataclass(slots=True)
class _Resource:
    uri: str
    fn: Callable[..., Any]
    definition: dict[str, Any]
    context_params: frozenset[str]
    pattern: re.Pattern[str] | None = None


@dataclass(slots=True)
class _Prompt:
    name: str
    fn: Callable[..., Any]
    definition: dict[str, Any]
    context_params: frozenset[str]
    param_names: list[str] = field(default_factory=list)


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


@final
class McpServer:
    """An MCP server: what it offers, independent of any transport.

    Example::

        server = McpServer("weather", "1.0.0")

        @server.tool()
        async def forecast(city: str, days: int = 3) -> str:
            \"\"\"Forecast for a city.

            Args:
                city: City name.
                days: How many days ahead.
            \"\"\"
            return f"sunny in {city} for {days} days"

    Args:
        name: ``serverInfo.name``.
        version: ``serverInfo.version``.
        instructions: Optional ``instructions`` sent in the ``initialize`` result.
        title: Optional human-readable ``serverInfo.title``.
        request_timeout: Default seconds a server-to-client request (sampling,
            elicitation, roots, ping) waits for its answer.
        max_subscriptions: ``resources/subscribe`` URIs a session may hold;
            one more is refused (-32602) until it unsubscribes from one.
        max_uri_length: Characters a subscribed URI may have (-32602 beyond).
    """

    def __init__(
        self,
        name: str,
        version: str = "0.0.0",
        *,
        instructions: str | None = None,
        title: str | None = None,
        description: str | None = None,
        request_timeout: float = 60.0,
        max_subscriptions: int = 100,
        max_uri_length: int = 2048,
    ) -> None:
        for option, value in (
            ("max_subscriptions", max_subscriptions),
            ("max_uri_length", max_uri_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{option} must be an int")
            if value < 1:
                raise ValueError(f"{option} must be at least 1, got {value}")
        self.max_subscriptions = max_subscriptions
        self.max_uri_length = max_uri_length
        self.name = name
        self.version = version
        self.instructions = instructions
        self.title = title
        self.description = description
        self.request_timeout = request_timeout
        self._tools: dict[str, _Tool] = {}
        self._resources: dict[str, _Resource] = {}
        self._templates: list[_Resource] = []
        self._prompts: dict[str, _Prompt] = {}
        self._completion: Callable[..., Any] | None = None
        self._on_initialize: list[Callable[[ClientInfo, bool], Awaitable[None] | None]] = []
        self._request_handlers: dict[str, RequestHandler] = {}
        self._notification_handlers: dict[str, NotificationHandler] = {}

    # -- registration -------------------------------------------------------------

    def tool(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        title: str | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        annotations: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Callable[[F], F]:
        """Register a tool.

        The input schema comes from the type hints and the docstring's
        ``Args:`` section unless *input_schema* is given (then arguments are
        passed through unvalidated). A parameter annotated :class:`Context`
        receives the request context. Return a string, content block(s), a
        :class:`ToolResult`, or any JSON value (sent as ``structuredContent``
        when it is an object). Raise :class:`ToolError` to report a failure.
        """

        def register(fn: F) -> F:
            tool_name = name or fn.__name__
            doc, arg_docs = parse_docstring(fn.__doc__)
            ctx_params = _context_params(fn)
            schema, params = signature_schema(fn, skip=ctx_params, arg_docs=arg_docs)
            definition: dict[str, Any] = {
                "name": tool_name,
                "description": description if description is not None else doc,
                "inputSchema": input_schema if input_schema is not None else schema,
            }
            if title is not None:
                definition["title"] = title
            if output_schema is not None:
                definition["outputSchema"] = output_schema
            if annotations is not None:
                definition["annotations"] = annotations
            if meta is not None:
                definition["_meta"] = meta
            self._tools[tool_name] = _Tool(
                tool_name,
                fn,
                definition,
                ctx_params,
                input_schema is None,
                frozenset(params),
                _enum_params(fn),
            )
            return fn

        return register

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        title: str | None = None,
    ) -> Callable[[F], F]:
        """Register a resource, or a resource template when *uri* has ``{variables}``.

        The function returns ``str`` (text), ``bytes`` (blob), or a list of
        ``ResourceContents`` objects. Template variables arrive as keyword
        arguments.
        """

        def register(fn: F) -> F:
            doc, _ = parse_docstring(fn.__doc__)
            definition: dict[str, Any] = {"name": name or fn.__name__}
            if title is not None:
                definition["title"] = title
            if description is not None or doc:
                definition["description"] = description if description is not None else doc
            if mime_type is not None:
                definition["mimeType"] = mime_type
            ctx_params = _context_params(fn)
            if _TEMPLATE_VAR.search(uri):
                definition["uriTemplate"] = uri
                self._templates.append(
                    _Resource(uri, fn, definition, ctx_params, _template_regex(uri))
                )
            else:
                definition["uri"] = uri
                self._resources[uri] = _Resource(uri, fn, definition, ctx_params)
            return fn

        return register

    def prompt(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        title: str | None = None,
    ) -> Callable[[F], F]:
        """Register a prompt; its (string) parameters become the prompt's arguments.

        Return a string (one user message), or a list of messages
        (``{"role", "content"}``) or content blocks (sent as user messages).
        """

        def register(fn: F) -> F:
            prompt_name = name or fn.__name__
            doc, arg_docs = parse_docstring(fn.__doc__)
            ctx_params = _context_params(fn)
            arguments: list[dict[str, Any]] = []
            names: list[str] = []
            for param in inspect.signature(fn).parameters.values():
                if param.name in ctx_params or param.kind in (
                    param.VAR_POSITIONAL,
                    param.VAR_KEYWORD,
                ):
                    continue
                argument: dict[str, Any] = {
                    "name": param.name,
                    "required": param.default is param.empty,
                }
                if param.name in arg_docs:
                    argument["description"] = arg_docs[param.name]
                arguments.append(argument)
                names.append(param.name)
            definition: dict[str, Any] = {
                "name": prompt_name,
                "description": description if description is not None else doc,
                "arguments": arguments,
            }
            if title is not None:
                definition["title"] = title
            self._prompts[prompt_name] = _Prompt(prompt_name, fn, definition, ctx_params, names)
            return fn

        return register

    def completion(self) -> Callable[[F], F]:
        """Register the ``completion/complete`` handler.

        It is called as ``fn(ref, argument, context)`` with the request's
        objects and returns a list of strings or a full ``completion`` object.
        """

        def register(fn: F) -> F:
            self._completion = fn
            return fn

        return register

    def on_initialize(
        self, fn: Callable[[ClientInfo, bool], Awaitable[None] | None]
    ) -> Callable[[ClientInfo, bool], Awaitable[None] | None]:
        """Register a hook run for every ``initialize``: ``fn(client, is_restored)``.

        ``is_restored`` is true when the handshake is a replay that restores a
        stored session, not a new client. Raise :class:`McpError` to refuse.
        """
        self._on_initialize.append(fn)
        return fn

    def request_handler(self, method: str) -> Callable[[RequestHandler], RequestHandler]:
        """Handle a custom request method: ``async fn(ctx, params) -> result``."""

        def register(fn: RequestHandler) -> RequestHandler:
            self._request_handlers[method] = fn
            return fn

        return register

    def notification_handler(
        self, method: str
    ) -> Callable[[NotificationHandler], NotificationHandler]:
        """Handle a client notification: ``async fn(ctx, params)``.

        *ctx* is a :class:`Context` without a request (``ctx.request_id`` is
        ``None``): logs and requests it sends go on the standalone stream.
        """

        def register(fn: NotificationHandler) -> NotificationHandler:
            self._notification_handlers[method] = fn
            return fn

        return register

    # -- the handshake --------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        caps: dict[str, Any] = {"logging": {}}
        if self._tools:
            caps["tools"] = {"listChanged": True}
        if self._resources or self._templates:
            caps["resources"] = {"subscribe": True, "listChanged": True}
        if self._prompts:
            caps["prompts"] = {"listChanged": True}
        if self._completion is not None or self._prompts or self._templates:
            caps["completions"] = {}
        return caps

    async def initialize(
        self, client: ClientInfo, *, is_restored: bool, timeout: float = math.inf
    ) -> dict[str, Any]:
        """Run the ``on_initialize`` hooks and build the ``InitializeResult``.

        Raises:
            trio.TooSlowError: The hooks took longer than *timeout* seconds.
        """
        if self._on_initialize:
            # Only hooks can take time; without any there is no deadline to set.
            with trio.fail_after(timeout):
                for hook in self._on_initialize:
                    maybe = hook(client, is_restored)
                    if inspect.isawaitable(maybe):
                        await maybe
        server_info: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.title is not None:
            server_info["title"] = self.title
        if self.description is not None and client.protocol_version >= "2025-11-25":
            server_info["description"] = self.description
        result: dict[str, Any] = {
            "protocolVersion": client.protocol_version,
            "capabilities": self.capabilities(),
            "serverInfo": server_info,
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    # -- dispatch ---------------------------------------------------------------------

    async def handle_request(self, request: Request, ctx: Context, session: Peer) -> dict[str, Any]:
        """Answer one request (other than ``initialize``) with its result.

        Raises:
            McpError: For any JSON-RPC error answer.
        """
        params = request.params or {}
        match request.method:
            case "ping":
                return {}
            case "tools/list":
                return {"tools": [t.definition for t in self._tools.values()]}
            case "tools/call":
                return await self._call_tool(ctx, params)
            case "resources/list":
                return {"resources": [r.definition for r in self._resources.values()]}
            case "resources/templates/list":
                return {"resourceTemplates": [r.definition for r in self._templates]}
            case "resources/read":
                return await self._read_resource(ctx, params)
            case "resources/subscribe" | "resources/unsubscribe":
                uri = params.get("uri")
                if not isinstance(uri, str):
                    raise McpError(INVALID_PARAMS, f"{request.method}: uri must be a string")
                if request.method == "resources/subscribe":
                    # Bounded: what a session subscribes to is held (and
                    # stored) for as long as the session lives.
                    if len(uri) > self.max_uri_length:
                        raise McpError(
                            INVALID_PARAMS,
                            "resources/subscribe: uri longer than "
                            f"{self.max_uri_length} characters",
                            {"max_uri_length": self.max_uri_length},
                        )
                    if (
                        uri not in session.subscriptions
                        and len(session.subscriptions) >= self.max_subscriptions
                    ):
                        raise McpError(
                            INVALID_PARAMS,
                            f"resources/subscribe: this session already holds the most "
                            f"subscriptions allowed ({self.max_subscriptions}); "
                            "unsubscribe from one first",
                            {"max_subscriptions": self.max_subscriptions},
                        )
                    session.subscribe(uri)
                else:
                    session.unsubscribe(uri)
                return {}
            case "prompts/list":
                return {"prompts": [p.definition for p in self._prompts.values()]}
            case "prompts/get":
                return await self._get_prompt(ctx, params)
            case "completion/complete":
                return await self._complete(params)
            case "logging/setLevel":
                level = params.get("level")
                if level not in LOG_LEVELS:
                    raise McpError(INVALID_PARAMS, f"logging/setLevel: unknown level {level!r}")
                session.set_log_level(level)
                return {}
        handler = self._request_handlers.get(request.method)
        if handler is None:
            raise McpError(METHOD_NOT_FOUND, f"Method not found: {request.method}")
        return await handler(ctx, params)

    async def handle_notification(self, notification: Notification, session: Peer) -> None:
        """Run the handler registered for *notification*, if any."""
        handler = self._notification_handlers.get(notification.method)
        if handler is not None:
            ctx = Context(session, None, None, default_timeout=self.request_timeout)
            await handler(ctx, notification.params or {})

    async def _call_tool(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise McpError(INVALID_PARAMS, "tools/call: name must be a string")
        tool = self._tools.get(name)
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
                return ToolResult(
                    [text_content(f"Invalid arguments: {problem}")], is_error=True
                ).to_json()
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
        except ToolError as exc:
            return ToolResult([text_content(str(exc))], is_error=True).to_json()
        except ClientRequestError as exc:
            return ToolResult(
                [text_content(f"The client refused a request: {exc.message}")], is_error=True
            ).to_json()
        except McpError:
            raise
        except CapabilityNotSupported as exc:
            return ToolResult([text_content(str(exc))], is_error=True).to_json()
        except trio.TooSlowError:
            return ToolResult(
                [text_content("Timed out waiting for the client")], is_error=True
            ).to_json()
        except TypeError as exc:
            # Usually a missing/extra argument under an explicit schema.
            logger.warning("tool %r raised TypeError: %s", name, exc)
            return ToolResult([text_content(f"Error: {exc}")], is_error=True).to_json()
        except Exception as exc:
            logger.exception("tool %r failed", name)
            return ToolResult(
                [text_content(f"Error: {type(exc).__name__}: {exc}")], is_error=True
            ).to_json()
        if isinstance(value, ToolResult):
            return value.to_json()
        if isinstance(value, dict) and value.get("type") not in CONTENT_TYPES:
            structured = _to_json(value)
            return {
                "content": [text_content(json.dumps(structured, ensure_ascii=False))],
                "structuredContent": structured,
            }
        return {"content": _to_content_list(value)}

    async def _read_resource(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "resources/read: uri must be a string")
        resource = self._resources.get(uri)
        kwargs: dict[str, Any] = {}
        if resource is None:
            for template in self._templates:
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
        return {"contents": contents}

    async def _get_prompt(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        prompt = self._prompts.get(name) if isinstance(name, str) else None
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

    async def _complete(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("ref")
        argument = params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise McpError(INVALID_PARAMS, "completion/complete: ref and argument are required")
        values: Any = []
        if self._completion is not None:
            values = await _call(
                self._completion,
                {"ref": ref, "argument": argument, "context": params.get("context")},
            )
        if isinstance(values, dict):
            return {"completion": values}
        values = [str(v) for v in values][:100]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}
