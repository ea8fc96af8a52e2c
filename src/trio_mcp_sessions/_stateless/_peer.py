"""The :class:`Peer` of one 2026-07-28 request: what its ``_meta`` declared, and its stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

import trio

from .._protocol._jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND, encode
from .._protocol._lifecycle import ClientInfo
from .._server._errors import InputRequired, McpError, MissingClientCapability
from .._streams import SseEvent

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Set as AbstractSet

    from .._protocol._era import ModernRequest
    from .._protocol._jsonrpc import Notification, RequestId
    from .._server._context import InputRequest
    from .._streams import EventStream

__all__ = ["INPUT_METHODS", "StatelessPeer"]

#: The requests that may answer with an ``InputRequiredResult`` (MRTR).
INPUT_METHODS: Final = frozenset({"tools/call", "prompts/get", "resources/read"})


@final
class StatelessPeer:
    """One request's view of its client, with no session behind it.

    Notifications (progress, logs) go on the request's own SSE stream, logs
    only when the request's ``_meta`` asked for a level; questions for the
    client are answered from the answers the client sent, or become an
    ``InputRequiredResult`` (:class:`InputRequired`).

    Args:
        request: The request, as the ladder passed it.
        stream: Its response's stream (``None``: a JSON reply, no notifications).
        answers: The client's answers so far, by input-request key.
        write_timeout: Seconds a notification may wait for a stalled reader.
    """

    __slots__ = (
        "_answers",
        "_client",
        "_method",
        "_stream",
        "_write_timeout",
        "asked",
        "modern",
        "used",
    )

    def __init__(
        self,
        request: ModernRequest,
        stream: EventStream | None,
        answers: Mapping[str, dict[str, Any]],
        *,
        write_timeout: float,
    ) -> None:
        self.modern = request
        self._method = request.message.method
        self._stream = stream
        self._answers = answers
        self._write_timeout = write_timeout
        self._client = ClientInfo(
            requested_version=request.protocol_version,
            protocol_version=request.protocol_version,
            capabilities=dict(request.client_capabilities),
            client_info=dict(request.client_info or {}),
            raw_params={},
        )
        #: Input requests the handler made that have no answer yet.
        self.asked: dict[str, dict[str, Any]] = {}
        #: The answers the handler read: all that the next round's state carries.
        self.used: dict[str, dict[str, Any]] = {}

    # -- who is asking ---------------------------------------------------------------

    @property
    def session_id(self) -> None:
        return None

    @property
    def client(self) -> ClientInfo:
        return self._client

    @property
    def log_level(self) -> str | None:
        return self.modern.log_level

    @property
    def is_restored(self) -> bool:
        return False

    @property
    def subscriptions(self) -> AbstractSet[str]:
        return frozenset()

    def _removed(self, what: str) -> McpError:
        version = self.modern.protocol_version
        return McpError(METHOD_NOT_FOUND, f"{what} does not exist at {version}")

    def set_log_level(self, level: str) -> None:
        raise self._removed("logging/setLevel")

    def subscribe(self, uri: str) -> None:
        raise self._removed("resources/subscribe")

    def unsubscribe(self, uri: str) -> None:
        raise self._removed("resources/unsubscribe")

    # -- talking back ----------------------------------------------------------------

    async def send_notification(
        self, notification: Notification, *, related_request: RequestId | None
    ) -> None:
        stream = self._stream
        if notification.method == "notifications/message" and self.modern.log_level is None:
            stream = None  # no logLevel in _meta: no log messages at all (MUST NOT)
        if stream is not None and not stream.ended:
            if not stream.writable:
                await stream.wait_writable(self._write_timeout)
            if not stream.ended:
                stream.put(SseEvent(None, encode(notification)))
        # A schedule point either way: a handler that only logs must not starve others.
        await trio.lowlevel.checkpoint()

    async def send_request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        if method == "ping":
            # The client is waiting for this very answer: it is alive. A
            # handler written for sessions keeps working.
            return {}
        raise McpError(
            INTERNAL_ERROR,
            f"{method}: a server sends no requests at {self.modern.protocol_version}; "
            "ask with Context.request_input",
        )

    def close_request_stream(self, request_id: RequestId) -> None:
        """Nothing to resume at 2026-07-28: the stream stays until the answer."""

    async def request_input(
        self,
        requests: Mapping[str, InputRequest],
        *,
        related_request: RequestId | None,
        timeout: float,
    ) -> dict[str, dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        if self._method not in INPUT_METHODS:
            raise McpError(
                INTERNAL_ERROR,
                f"{self._method} cannot ask the client for input "
                "(only tools/call, prompts/get and resources/read can)",
            )
        missing: dict[str, dict[str, Any]] = {}
        for key, request in requests.items():
            if key in self._answers:
                continue
            if not self._client.has_capability(request.capability, request.sub):
                raise MissingClientCapability(request.capability)
            asked: dict[str, Any] = {"method": request.method}
            if request.params is not None:
                asked["params"] = request.params
            missing[key] = asked
        if missing:
            self.asked.update(missing)
            raise InputRequired(missing)
        answers = {key: self._answers[key] for key in requests}
        self.used.update(answers)
        return answers
