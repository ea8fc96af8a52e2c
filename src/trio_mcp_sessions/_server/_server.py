"""The native MCP server API: what a server offers (registration), the handshake, dispatch."""

from __future__ import annotations

import enum
import inspect
import math
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, final, get_type_hints

import trio

from .._protocol._jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, Notification, Request
from ._context import LOG_LEVELS, Context, Peer
from ._dispatch import (
    RegisteredPrompt,
    RegisteredResource,
    RegisteredTool,
    call_tool,
    complete,
    get_prompt,
    read_resource,
)
from ._errors import McpError
from ._schema import parse_docstring, signature_schema

if TYPE_CHECKING:
    from .._protocol._lifecycle import ClientInfo

__all__ = ["McpServer"]

F = TypeVar("F", bound=Callable[..., Any])
RequestHandler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
NotificationHandler = Callable[[Context, dict[str, Any]], Awaitable[None]]


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
        self._tools: dict[str, RegisteredTool] = {}
        self._resources: dict[str, RegisteredResource] = {}
        self._templates: list[RegisteredResource] = []
        self._prompts: dict[str, RegisteredPrompt] = {}
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
            self._tools[tool_name] = RegisteredTool(
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
                    RegisteredResource(uri, fn, definition, ctx_params, _template_regex(uri))
                )
            else:
                definition["uri"] = uri
                self._resources[uri] = RegisteredResource(uri, fn, definition, ctx_params)
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
            self._prompts[prompt_name] = RegisteredPrompt(
                prompt_name, fn, definition, ctx_params, names
            )
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
                return await call_tool(self._tools, ctx, params)
            case "resources/list":
                return {"resources": [r.definition for r in self._resources.values()]}
            case "resources/templates/list":
                return {"resourceTemplates": [r.definition for r in self._templates]}
            case "resources/read":
                return await read_resource(self._resources, self._templates, ctx, params)
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
                return await get_prompt(self._prompts, ctx, params)
            case "completion/complete":
                return await complete(self._completion, params)
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
