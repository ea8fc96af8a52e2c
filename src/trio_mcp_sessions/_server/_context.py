"""The per-request context that handlers use to talk back to the client."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import trio

from .._protocol._deadline import RequestDeadline
from .._protocol._jsonrpc import Notification, RequestId

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from collections.abc import Set as AbstractSet

    from .._auth._types import VerifiedToken
    from .._protocol._lifecycle import ClientInfo

__all__ = ["LOG_LEVELS", "Context", "InputRequest", "Peer"]

#: RFC 5424 severities, least severe first (MCP ``LoggingLevel``).
LOG_LEVELS: Final = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_SEVERITY: Final = {name: index for index, name in enumerate(LOG_LEVELS)}


@final
@dataclass(frozen=True, slots=True)
class InputRequest:
    """One question for the client: an elicitation, a sampling or a roots request.

    Build them with :meth:`elicitation`, :meth:`sampling` and :meth:`roots`,
    and ask with :meth:`Context.request_input`. In a session (2025 revisions)
    each becomes a server-to-client request; at 2026-07-28 they travel in an
    ``InputRequiredResult`` and come back with the client's retry. The
    handler is the same either way.

    Attributes:
        method: ``elicitation/create``, ``sampling/createMessage`` or ``roots/list``.
        params: The request's params.
        capability: The client capability it needs (``sub``: its sub-capability).
    """

    method: str
    params: dict[str, Any] | None
    capability: str
    sub: str | None = None

    @classmethod
    def elicitation(cls, message: str, requested_schema: dict[str, Any]) -> InputRequest:
        """Ask the user for structured input (form mode)."""
        return cls(
            "elicitation/create",
            {"message": message, "requestedSchema": requested_schema},
            "elicitation",
            "form",
        )

    @classmethod
    def sampling(
        cls,
        messages: str | Sequence[dict[str, Any]],
        *,
        max_tokens: int,
        system_prompt: str | None = None,
        **extra: Any,
    ) -> InputRequest:
        """Ask the client's model for a completion (``**extra``: other params, as given)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
        params: dict[str, Any] = {"messages": list(messages), "maxTokens": max_tokens, **extra}
        if system_prompt is not None:
            params["systemPrompt"] = system_prompt
        return cls("sampling/createMessage", params, "sampling")

    @classmethod
    def roots(cls) -> InputRequest:
        """Ask for the client's filesystem roots."""
        return cls("roots/list", None, "roots")


_KEY_PREFIX: Final = {
    "elicitation/create": "elicit",
    "sampling/createMessage": "sample",
    "roots/list": "roots",
}


class Peer(Protocol):
    """What a session offers the server API: who the client is, and a way to talk back.

    Implemented by the session layer; a :class:`Context` wraps one. The
    session state a client can change (its log level, its subscriptions)
    changes only through :meth:`set_log_level`, :meth:`subscribe` and
    :meth:`unsubscribe`, so the session knows at once when it has to be saved.
    A test can implement this protocol to run a handler without a server.
    """

    @property
    def session_id(self) -> str | None:
        """The ``Mcp-Session-Id`` (``None`` at 2026-07-28, which has no sessions)."""
        ...

    @property
    def client(self) -> ClientInfo:
        """The client's ``initialize`` parameters and negotiated version."""
        ...

    @property
    def log_level(self) -> str | None:
        """The client's ``logging/setLevel`` (``None``: send every level)."""
        ...

    @property
    def is_restored(self) -> bool:
        """True when the session was restored from a session store."""
        ...

    @property
    def subscriptions(self) -> AbstractSet[str]:
        """The resource URIs the client subscribed to (read-only)."""
        ...

    def set_log_level(self, level: str) -> None:
        """The client's ``logging/setLevel``: below it, :meth:`Context.log` sends nothing."""

    def subscribe(self, uri: str) -> None:
        """Add a ``resources/subscribe`` URI (the caller checks the bounds)."""

    def unsubscribe(self, uri: str) -> None:
        """Remove a URI; a no-op when it was not subscribed."""

    async def send_notification(
        self, notification: Notification, *, related_request: RequestId | None
    ) -> None:
        """Send *notification* on *related_request*'s stream (``None``: the standalone one)."""

    async def send_request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, Any]:
        """Send a request to the client and return its result.

        Raises:
            ClientRequestError: The client answered with an error.
            trio.TooSlowError: No answer within *timeout*.
        """
        ...

    def close_request_stream(self, request_id: RequestId) -> None:
        """End the HTTP response carrying *request_id*, not the request (SEP-1699)."""

    async def request_input(
        self,
        requests: Mapping[str, InputRequest],
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, dict[str, Any]]:
        """The client's answers to *requests*, by key.

        Raises:
            CapabilityNotSupported, MissingClientCapability: The client did
                not declare a capability one of them needs.
            ClientRequestError: The client answered one with an error.
            trio.TooSlowError: No answer within *timeout* (session era).
            InputRequired: At 2026-07-28, while answers are missing: the
                request is answered with an ``InputRequiredResult``.
        """
        ...


@final
class Context:
    """Handed to a handler that asks for it (a parameter annotated ``Context``).

    Everything sent through a context is *related* to the request being
    handled: on a Streamable HTTP session it travels on that request's SSE
    stream, so the client can tie progress, logs, sampling and elicitation to
    the call that caused them. A notification handler's context has no
    request (``request_id`` is ``None``): what it sends goes on the session's
    standalone (GET) stream.

    A request's handler runs under a deadline, *request_timeout* seconds
    from its start (the transport's ``ServerOptions.request_timeout``): each
    :meth:`report_progress` pushes it to *request_timeout* from then, but
    never past *max_request_time* from the start. At the deadline
    :meth:`McpServer.handle_request` cancels the handler and answers that it
    timed out (:attr:`timed_out`). The defaults (``inf``) set no deadline, for
    a context built by hand.

    Attributes:
        request_id: The id of the request being handled (``None`` for a notification).
        meta: The request's ``params._meta`` (empty when absent).
        default_timeout: Seconds a server-to-client request waits for its answer.
    """

    __slots__ = (
        "_asked",
        "_deadline",
        "_deadline_scope",
        "_last_progress",
        "_peer",
        "_principal",
        "_scope_filter",
        "_token",
        "default_timeout",
        "meta",
        "request_id",
    )

    def __init__(
        self,
        peer: Peer,
        request_id: RequestId | None,
        meta: dict[str, Any] | None,
        *,
        default_timeout: float = 60.0,
        request_timeout: float = math.inf,
        max_request_time: float = math.inf,
        principal: str | None = None,
        token: VerifiedToken | None = None,
        scope_filter: Callable[[AbstractSet[str]], bool] | None = None,
    ) -> None:
        self._peer = peer
        self._principal = principal
        self._token = token
        self._scope_filter = scope_filter
        self.request_id = request_id
        self.meta: dict[str, Any] = meta or {}
        self.default_timeout = default_timeout
        self._deadline: RequestDeadline | None = None
        if request_timeout < math.inf or max_request_time < math.inf:
            self._deadline = RequestDeadline(
                trio.current_time(),
                request_timeout=request_timeout,
                max_request_time=max_request_time,
            )
        #: The cancel scope that enforces it, while the handler runs (``handle_request``).
        self._deadline_scope: trio.CancelScope | None = None
        self._last_progress = -math.inf
        #: Input requests made without a key, by kind: their keys are "<kind>-<n>",
        #: the same each time a handler runs again with the client's answers.
        self._asked: dict[str, int] = {}

    # -- who is asking ---------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        """The session's id; ``None`` for a 2026-07-28 request (no sessions)."""
        return self._peer.session_id

    @property
    def client(self) -> ClientInfo:
        """The client's ``initialize`` parameters and negotiated version."""
        return self._peer.client

    @property
    def principal(self) -> str | None:
        """The authenticated identity the request carries (the application's
        ``principal`` hook; ``None`` without auth). A session's is the one it
        was bound to at ``initialize``, which every one of its requests must match."""
        return self._principal

    @property
    def token(self) -> VerifiedToken | None:
        """The verified access token of this request (``None`` without a resource server).

        Its facts only (issuer, subject, client, scopes, expiry, claims): the
        bearer string itself never reaches a handler, so it cannot be passed
        on to another service by mistake (use a token exchange for that).
        """
        return self._token

    def may_use(self, scopes: AbstractSet[str]) -> bool:
        """Whether this request's token covers *scopes*; always true unless lists are filtered.

        What ``tools/list`` asks with ``ResourceServer(filter_lists=True)``.
        """
        return self._scope_filter is None or self._scope_filter(scopes)

    @property
    def is_restored(self) -> bool:
        """True when this session was restored from a session store (not a new client)."""
        return self._peer.is_restored

    @property
    def deadline(self) -> float:
        """When the handler is cut unless it reports progress (trio time; ``inf``: never)."""
        return self._deadline.deadline if self._deadline is not None else math.inf

    @property
    def timed_out(self) -> bool:
        """The deadline cut the handler (not a client's cancel: that answers nothing)."""
        return self._deadline is not None and self._deadline.expired

    @property
    def progress_token(self) -> str | int | None:
        token = self.meta.get("progressToken")
        if isinstance(token, (str, int)) and not isinstance(token, bool):
            return token
        return None

    # -- notifications ---------------------------------------------------------------

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Send ``notifications/progress`` if the client asked for progress.

        Either way the handler has shown it is alive: its deadline moves to
        ``request_timeout`` from now, but never past ``max_request_time``
        from its start.

        Raises:
            ValueError: If *progress* does not increase (MCP requires it to).
        """
        token = self.progress_token
        if token is not None and progress <= self._last_progress:
            raise ValueError(f"progress must increase: {progress} after {self._last_progress}")
        self._alive()
        if token is None:
            return
        self._last_progress = progress
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self._peer.send_notification(
            Notification("notifications/progress", params), related_request=self.request_id
        )

    async def log(self, level: str, data: Any, *, logger: str | None = None) -> None:
        """Send ``notifications/message`` unless below the client's ``logging/setLevel``."""
        if level not in _SEVERITY:
            raise ValueError(f"unknown log level {level!r}; use one of {LOG_LEVELS}")
        threshold = self._peer.log_level
        if threshold is not None and _SEVERITY[level] < _SEVERITY[threshold]:
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self._peer.send_notification(
            Notification("notifications/message", params), related_request=self.request_id
        )

    async def debug(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("debug", data, logger=logger)

    async def info(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("info", data, logger=logger)

    async def warning(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("warning", data, logger=logger)

    async def error(self, data: Any, *, logger: str | None = None) -> None:
        await self.log("error", data, logger=logger)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send any notification on this request's stream."""
        await self._peer.send_notification(
            Notification(method, params), related_request=self.request_id
        )

    # -- server-to-client requests -----------------------------------------------------

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a request to the client and wait for its result.

        Raises:
            McpError: The client answered with a JSON-RPC error.
            trio.TooSlowError: No answer within *timeout* (the request is then
                cancelled with ``notifications/cancelled``).
        """
        wait = self.default_timeout if timeout is None else timeout
        self._alive(waiting=wait)
        answer = await self._peer.send_request(
            method, params, related_request=self.request_id, timeout=wait
        )
        self._alive()
        return answer

    async def request_input(
        self, requests: Mapping[str, InputRequest], *, timeout: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """Ask the client several questions at once; their results, by your keys.

        In a session they go out together as server-to-client requests; at
        2026-07-28 they go out in one ``InputRequiredResult`` (a handler that
        asks runs again, from the start, when the client retries with the
        answers, so keep what it does before asking free of side effects).

        Raises:
            CapabilityNotSupported: (session era) or MissingClientCapability
                (2026-07-28): the client lacks a capability one of them needs.
            ClientRequestError: The client answered with an error.
            trio.TooSlowError: No answer within *timeout* (session era).
        """
        wait = self.default_timeout if timeout is None else timeout
        self._alive(waiting=wait)
        answers = await self._peer.request_input(
            requests, related_request=self.request_id, timeout=wait
        )
        self._alive()
        return answers

    def _alive(self, *, waiting: float | None = None) -> None:
        """Move the deadline on: the handler showed progress, or waits for the client.

        A question for the client (in a session) is not cut by the handler's
        deadline before its own *timeout* is over (a human may be answering
        an elicitation), and an answer counts as progress; neither goes past
        ``max_request_time``.
        """
        if self._deadline is None:
            return
        now = trio.current_time()
        if waiting is None:
            deadline = self._deadline.progress(now)
        else:
            deadline = self._deadline.waiting(now, waiting)
        if self._deadline_scope is not None:
            self._deadline_scope.deadline = deadline

    def _key(self, request: InputRequest, key: str | None) -> str:
        if key is not None:
            return key
        kind = _KEY_PREFIX.get(request.method, "input")
        number = self._asked.get(kind, 0) + 1
        self._asked[kind] = number
        return f"{kind}-{number}"

    async def _ask(self, request: InputRequest, key: str | None, timeout: float | None) -> Any:
        name = self._key(request, key)
        return (await self.request_input({name: request}, timeout=timeout))[name]

    async def sample(
        self,
        messages: str | Sequence[dict[str, Any]],
        *,
        max_tokens: int,
        system_prompt: str | None = None,
        timeout: float | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Ask the client's model for a completion (``sampling/createMessage``).

        Args:
            messages: A user prompt, or a list of ``SamplingMessage`` objects.
            max_tokens: Required by MCP.
            system_prompt: Optional system prompt.
            timeout: Seconds to wait; defaults to the context's default.
            key: The ``inputRequests`` key at 2026-07-28 (default ``sample-<n>``).
            **extra: Other ``CreateMessageRequest`` params (``temperature``,
                ``modelPreferences``, ...), passed through as given.
        """
        request = InputRequest.sampling(
            messages, max_tokens=max_tokens, system_prompt=system_prompt, **extra
        )
        result: dict[str, Any] = await self._ask(request, key, timeout)
        return result

    async def elicit(
        self,
        message: str,
        requested_schema: dict[str, Any],
        *,
        timeout: float | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Ask the user for structured input (``elicitation/create``, form mode)."""
        result: dict[str, Any] = await self._ask(
            InputRequest.elicitation(message, requested_schema), key, timeout
        )
        return result

    async def list_roots(
        self, *, timeout: float | None = None, key: str | None = None
    ) -> list[dict[str, Any]]:
        """The client's filesystem roots (``roots/list``)."""
        result = await self._ask(InputRequest.roots(), key, timeout)
        roots = result.get("roots", []) if isinstance(result, dict) else []
        return roots if isinstance(roots, list) else []

    async def ping(self, *, timeout: float | None = None) -> None:
        await self.request("ping", None, timeout=timeout)

    def close_sse_stream(self) -> None:
        """End this request's HTTP response now, without ending the request.

        This is SEP-1699 server-side polling: the client reconnects with
        ``Last-Event-ID`` after the ``retry`` delay and receives what it
        missed, including the eventual result. It is a no-op when the request
        is not carried on a resumable SSE stream.
        """
        if self.request_id is not None:
            self._peer.close_request_stream(self.request_id)
