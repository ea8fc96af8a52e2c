"""The native MCP server API: what a server offers (registration), the handshake, dispatch.

One server answers both eras. A request's era is its peer's
(``session.client.protocol_version``): the handshake era is answered exactly
as it always was; at 2026-07-28 (:func:`~.._protocol._era.is_modern_version`)
every result also says ``resultType`` and who answered (``_meta`` serverInfo),
the cacheable ones carry caching hints, ``server/discover`` replaces the
handshake, and a method whose capability discovery does not declare is "not
found" (those rules are :mod:`._modern`'s). The records a decorator registers
are built, and the built-in methods run, by :mod:`._dispatch`.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio

from .._protocol._deadline import REQUEST_TIMED_OUT
from .._protocol._era import is_modern_version
from .._protocol._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    Notification,
    Request,
)
from .._protocol._oauth import SCOPE_TOKEN as _SCOPE_TOKEN
from ._caching import DEFAULT_CACHE_HINT, CacheHint
from ._content import text_content
from ._context import LOG_LEVELS, Context, Peer
from ._dispatch import (
    RegisteredPrompt,
    RegisteredResource,
    RegisteredTool,
    call_tool,
    complete,
    get_prompt,
    prompt_record,
    read_resource,
    resource_record,
    tool_record,
)
from ._errors import McpError
from ._modern import (
    check_cache_hints,
    check_declared,
    claims_modern,
    complete_result,
    discover_fields,
    missing_resource,
)

if TYPE_CHECKING:
    from .._protocol._deadline import RequestDeadline
    from .._protocol._lifecycle import ClientInfo

__all__ = ["McpServer"]

logger = logging.getLogger("trio_mcp_sessions.server")

F = TypeVar("F", bound=Callable[..., Any])
RequestHandler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
NotificationHandler = Callable[[Context, dict[str, Any]], Awaitable[None]]


def _subscription(
    method: str, params: dict[str, Any], peer: Peer, max_uri_length: int, max_subscriptions: int
) -> dict[str, Any]:
    """``resources/subscribe`` and ``resources/unsubscribe`` on *peer*, bounded.

    What a session subscribes to is held (and stored) for as long as the
    session lives: a URI has at most *max_uri_length* characters, a session
    at most *max_subscriptions* of them.
    """
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise McpError(INVALID_PARAMS, f"{method}: uri must be a string")
    if method == "resources/unsubscribe":
        peer.unsubscribe(uri)
        return {}
    if len(uri) > max_uri_length:
        raise McpError(
            INVALID_PARAMS,
            f"resources/subscribe: uri longer than {max_uri_length} characters",
            {"max_uri_length": max_uri_length},
        )
    if uri not in peer.subscriptions and len(peer.subscriptions) >= max_subscriptions:
        raise McpError(
            INVALID_PARAMS,
            f"resources/subscribe: this session already holds the most "
            f"subscriptions allowed ({max_subscriptions}); unsubscribe from one first",
            {"max_subscriptions": max_subscriptions},
        )
    peer.subscribe(uri)
    return {}


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
        instructions: Optional ``instructions`` sent in the ``initialize`` result
            (and, at 2026-07-28, in ``server/discover``'s).
        title: Optional human-readable ``serverInfo.title``.
        request_timeout: Default seconds a server-to-client request (sampling,
            elicitation, roots, ping) waits for its answer. (How long a
            handler may run is the transport's: ``ServerOptions.request_timeout``
            and ``max_request_time``.)
        max_subscriptions: ``resources/subscribe`` URIs a session may hold;
            one more is refused (-32602) until it unsubscribes from one.
        max_uri_length: Characters a subscribed URI may have (-32602 beyond).
        cache: The caching hint (``ttlMs``, ``cacheScope``) of every cacheable
            2026-07-28 result: ``server/discover``, the lists and
            ``resources/read``. The default (0 ms, private) promises nothing.
        cache_hints: Hints for single methods among those, overriding *cache*,
            e.g. ``{"tools/list": CacheHint(300_000, "public")}``. A resource's
            own ``cache=`` overrides both for its reads.
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
        cache: CacheHint = DEFAULT_CACHE_HINT,
        cache_hints: Mapping[str, CacheHint] | None = None,
    ) -> None:
        self._cache_hints = check_cache_hints(cache, cache_hints)
        self.cache = cache
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
        scopes: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Register a tool.

        The input schema comes from the type hints and the docstring's
        ``Args:`` section unless *input_schema* is given (then arguments are
        passed through unvalidated). A parameter annotated :class:`Context`
        receives the request context. Return a string, content block(s), a
        :class:`ToolResult`, or any JSON value (sent as ``structuredContent``
        when it is an object). Raise :class:`ToolError` to report a failure.

        A parameter annotated ``Annotated[str, McpHeader("Name")]`` (or a
        property of *input_schema* with ``"x-mcp-header": "Name"``) is
        mirrored in an ``Mcp-Param-Name`` header at 2026-07-28.

        *scopes* are the OAuth scopes a call needs, beyond the resource
        server's own (:class:`ResourceServer`): a token without them gets
        403 ``insufficient_scope`` naming every scope the call needs, before
        the tool runs. Without a resource server they mean nothing.

        Raises:
            ValueError: An ``x-mcp-header`` breaks the spec's rules (not an
                HTTP token, used twice, or on a parameter that is not a
                string, integer or boolean), or a scope is not an OAuth scope.
        """
        if isinstance(scopes, str):
            raise TypeError(f"scopes must be a collection of scope names, not {scopes!r}")
        needed = frozenset(scopes)
        for scope in needed:
            if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
                raise ValueError(f"tool scopes: {scope!r} is not a valid OAuth scope")

        def register(fn: F) -> F:
            tool = tool_record(
                fn,
                name,
                description=description,
                title=title,
                input_schema=input_schema,
                output_schema=output_schema,
                annotations=annotations,
                meta=meta,
                scopes=needed,
            )
            self._tools[tool.name] = tool
            return fn

        return register

    def tool_scopes(self, name: str) -> frozenset[str]:
        """The scopes a call of tool *name* needs (``@server.tool(scopes=...)``; unknown: none)."""
        tool = self._tools.get(name)
        return tool.scopes if tool is not None else frozenset()

    def all_tool_scopes(self) -> frozenset[str]:
        """Every scope some tool needs (for the metadata's ``scopes_supported``)."""
        return frozenset().union(*(tool.scopes for tool in self._tools.values()))

    def remove_tool(self, name: str) -> bool:
        """Unregister a tool; whether it was there. Tell clients with ``notify_all``."""
        return self._tools.pop(name, None) is not None

    def remove_prompt(self, name: str) -> bool:
        """Unregister a prompt; whether it was there. Tell clients with ``notify_all``."""
        return self._prompts.pop(name, None) is not None

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        title: str | None = None,
        cache: CacheHint | None = None,
    ) -> Callable[[F], F]:
        """Register a resource, or a resource template when *uri* has ``{variables}``.

        The function returns ``str`` (text), ``bytes`` (blob), or a list of
        ``ResourceContents`` objects. Template variables arrive as keyword
        arguments. *cache* is the caching hint of its reads at 2026-07-28
        (default: the server's for ``resources/read``).
        """
        if cache is not None and not isinstance(cache, CacheHint):
            raise TypeError(f"cache: a CacheHint is required, got {type(cache).__name__}")

        def register(fn: F) -> F:
            resource = resource_record(
                fn,
                uri,
                name=name,
                description=description,
                mime_type=mime_type,
                title=title,
                cache=cache,
            )
            if resource.pattern is not None:
                self._templates.append(resource)
            else:
                self._resources[uri] = resource
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
            prompt = prompt_record(fn, name, description=description, title=title)
            self._prompts[prompt.name] = prompt
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
        """What this server offers, derived from what is registered.

        The same in both eras: at 2026-07-28 the list-changed notifications
        and resource updates travel on ``subscriptions/listen`` streams
        (``resources.subscribe`` now means its ``resourceSubscriptions``
        filter), logs on the request's own stream at its ``logLevel``.
        """
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
        server_info = self.server_info()
        if client.protocol_version < "2025-11-25":
            server_info.pop("description", None)  # newer than the client's version
        result: dict[str, Any] = {
            "protocolVersion": client.protocol_version,
            "capabilities": self.capabilities(),
            "serverInfo": server_info,
        }
        if self.instructions is not None:
            result["instructions"] = self.instructions
        return result

    # -- 2026-07-28: discovery, identity, routing headers ----------------------------

    def server_info(self) -> dict[str, Any]:
        """``{name, version, title?, description?}``: who answers (an ``Implementation``).

        2026-07-28 results carry it in ``_meta["io.modelcontextprotocol/serverInfo"]``;
        a runner that builds a result itself (an ``input_required`` one) puts
        it there too.
        """
        info: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.title is not None:
            info["title"] = self.title
        if self.description is not None:
            info["description"] = self.description
        return info

    def discover_result(self) -> dict[str, Any]:
        """The complete ``server/discover`` result (2026-07-28).

        ``supportedVersions`` is what an unsupported version's -32022 lists
        too; ``capabilities`` match what is registered. A transport may
        answer the probe with it before any session-like machinery runs.
        """
        result = discover_fields(self.capabilities(), self.instructions)
        return self._complete("server/discover", result, None)

    def param_headers(self, tool_name: str) -> dict[tuple[str, ...], tuple[str, str]]:
        """A tool's ``x-mcp-header`` parameters: ``{path: (header name, type)}``.

        What the transport checks a ``tools/call``'s ``Mcp-Param-*`` headers
        against before dispatch (``_era.check_param_headers``); empty for a
        tool without any, or an unknown one (its call fails on its own).
        """
        tool = self._tools.get(tool_name)
        return dict(tool.param_headers) if tool is not None else {}

    # -- dispatch ---------------------------------------------------------------------

    async def handle_request(self, request: Request, ctx: Context, session: Peer) -> dict[str, Any]:
        """Answer one request (other than ``initialize``) with its result.

        The era is the peer's (``session.client.protocol_version``), asked
        only when the request claims a version in ``_meta``. At 2026-07-28 the
        result is complete: ``resultType``, serverInfo in ``_meta``, caching
        hints where the method has them.

        The handler runs until the context's deadline (set by whoever runs
        the request, pushed on by progress): then it is cancelled, and a
        ``tools/call`` answers an ``isError`` result saying that it timed out
        (so the model knows), any other method a JSON-RPC error.

        Raises:
            McpError: For any JSON-RPC error answer (the deadline's too).
            InputRequired: Handler code needs the client's input first
                (2026-07-28); whoever runs the request answers it.
        """
        modern = claims_modern(request) and is_modern_version(session.client.protocol_version)
        handle = self._handle_modern if modern else self._handle
        deadline = ctx._deadline
        if deadline is None:
            return await handle(request, ctx, session)
        # Its own scope, so that a client's cancel or departure (the runner's
        # scope around this one) is never taken for the deadline, nor the other way.
        with trio.CancelScope(deadline=deadline.deadline) as scope:
            ctx._deadline_scope = scope
            try:
                return await handle(request, ctx, session)
            finally:
                ctx._deadline_scope = None
        deadline.expired = True
        return self._timed_out(request, deadline, modern)

    def _timed_out(
        self, request: Request, deadline: RequestDeadline, modern: bool
    ) -> dict[str, Any]:
        """The answer of a request its deadline cut: an ``isError`` result for a tool."""
        seconds = round(deadline.ran_for, 3)
        limits = (
            f"the server allows {deadline.request_timeout:g} s without progress, "
            f"{deadline.max_request_time:g} s in all"
        )
        params = request.params or {}
        if request.method == "tools/call":
            name = params.get("name")
            logger.warning("tool %r timed out after %g s (%s)", name, seconds, limits)
            result: dict[str, Any] = {
                "content": [
                    text_content(
                        f"The tool {name!r} timed out after {seconds:g} s and was "
                        f"cancelled ({limits})."
                    )
                ],
                "isError": True,
            }
            return self._complete("tools/call", result, None) if modern else result
        logger.warning("%s timed out after %g s (%s)", request.method, seconds, limits)
        raise McpError(
            REQUEST_TIMED_OUT,
            f"Request timed out after {seconds:g} s ({limits})",
            {"timeout": seconds},
        )

    async def _handle_modern(self, request: Request, ctx: Context, session: Peer) -> dict[str, Any]:
        method = request.method
        if method == "server/discover":
            return self.discover_result()
        check_declared(method, self.capabilities())
        params = request.params or {}
        hint: CacheHint | None = None
        try:
            if method == "resources/read":
                result, resource = await read_resource(
                    self._resources, self._templates, ctx, params
                )
                hint = resource.cache
            else:
                result = await self._handle(request, ctx, session)
        except McpError as exc:
            if exc.code != RESOURCE_NOT_FOUND:
                raise
            raise missing_resource(exc, method, params) from exc
        return self._complete(method, result, hint)

    def _complete(
        self, method: str, result: Mapping[str, Any], hint: CacheHint | None
    ) -> dict[str, Any]:
        """*result* completed for 2026-07-28; *hint* ``None``: the server's for *method*."""
        if hint is None:
            hint = self._cache_hints.get(method, self.cache)
        return complete_result(method, result, self.server_info(), hint)

    async def _handle(self, request: Request, ctx: Context, session: Peer) -> dict[str, Any]:
        """The methods of both eras, answered as the handshake era always did."""
        params = request.params or {}
        match request.method:
            case "ping":
                return {}
            case "tools/list":
                return {
                    "tools": [t.definition for t in self._tools.values() if ctx.may_use(t.scopes)]
                }
            case "tools/call":
                return await call_tool(self._tools, ctx, params)
            case "resources/list":
                return {"resources": [r.definition for r in self._resources.values()]}
            case "resources/templates/list":
                return {"resourceTemplates": [r.definition for r in self._templates]}
            case "resources/read":
                result, _ = await read_resource(self._resources, self._templates, ctx, params)
                return result
            case "resources/subscribe" | "resources/unsubscribe":
                return _subscription(
                    request.method, params, session, self.max_uri_length, self.max_subscriptions
                )
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
