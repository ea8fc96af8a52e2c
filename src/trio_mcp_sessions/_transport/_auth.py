"""The resource server at the door: metadata, the bearer check, the scope check.

:class:`AuthGate` is what :class:`StreamableHTTPApp` asks, in this order:
the metadata paths (no token needed), the bearer token of every POST, GET
and DELETE before the body is read or a session looked up (401/400/503/429),
and, once the body is parsed, the scopes of each request in it (403) before
anything is allocated. The arithmetic is :mod:`.._auth._challenge`'s.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio

from .._auth._challenge import (
    FailedVerifications,
    MalformedCredentials,
    bearer_token,
    missing_scopes,
    operation_scopes,
    protected_resource_metadata,
    www_authenticate,
)
from .._auth._types import InvalidToken, RunnableVerifier, VerifiedToken, VerifierUnavailable
from .._protocol._jsonrpc import INVALID_REQUEST, SERVER_ERROR, Request
from ._answers import _HTTPError
from ._replies import _send_simple

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from collections.abc import Set as AbstractSet

    from .._auth._config import ResourceServer
    from .._interface import RequestInfo
    from .._protocol._jsonrpc import Message
    from .._server._server import McpServer
    from ._replies import Scope, Send

__all__ = ["AuthGate", "AuthStatistics", "token_deadline"]

logger = logging.getLogger("trio_mcp_sessions.auth")

#: JSON-RPC code of an authorization refusal (the HTTP status and the
#: ``WWW-Authenticate`` header say which one; ``data.error`` names it too).
UNAUTHORIZED: Final = SERVER_ERROR
_CORS: Final = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"mcp-protocol-version"),
]


def token_deadline(token: VerifiedToken | None) -> float | None:
    """When, on trio's clock, a stream opened with *token* must end (``None``: never).

    ``exp`` is wall-clock time; the stream's deadline is trio's, so it is
    taken as "this many seconds from now".
    """
    if token is None or token.expires_at is None:
        return None
    return trio.current_time() + max(0.0, token.expires_at - time.time())


#: What can become of a request's credentials: the :class:`AuthStatistics`
#: fields that count them, and the ``outcome`` label of ``mcp_auth_requests``.
OUTCOMES: Final = (
    "verified",
    "missing",
    "malformed",
    "invalid",
    "insufficient_scope",
    "unavailable",
    "throttled",
)


@dataclass(frozen=True, slots=True)
class AuthStatistics:
    """What the resource server let in and turned away, by reason.

    Attributes:
        verified: Requests whose token the verifier accepted.
        missing: 401 without ``error``: no credentials (or another scheme).
        malformed: 400 ``invalid_request``: two headers, an empty or
            ill-formed token, a token in the query.
        invalid: 401 ``invalid_token``.
        insufficient_scope: 403 ``insufficient_scope``.
        unavailable: 503: the verifier could not reach its authorization server.
        throttled: 429: refused unverified after too many failed verifications.
        failing_keys: Client keys with failed verifications in their window now.
        metadata_served: Protected Resource Metadata documents served.
        verifier: The verifier's own ``statistics()`` record, if it has one
            (:class:`JwtVerifierStatistics`, :class:`IntrospectionVerifierStatistics`).
    """

    verified: int
    missing: int
    malformed: int
    invalid: int
    insufficient_scope: int
    unavailable: int
    throttled: int
    failing_keys: int
    metadata_served: int
    verifier: Any = None


@final
class AuthGate:
    """One :class:`ResourceServer` applied to requests; the app holds one."""

    def __init__(
        self,
        config: ResourceServer,
        server: McpServer | None,
        failure_key: Callable[[RequestInfo], str | None],
        app_path: str,
    ) -> None:
        self.config = config
        self._server = server
        self._failure_key = failure_key
        scopes = set(config.base_scopes)
        for method_scopes in config.scopes_by_method.values():
            scopes |= method_scopes
        if server is not None:
            scopes |= server.all_tool_scopes()
        supported = config.scopes_supported if config.scopes_supported is not None else scopes
        document = protected_resource_metadata(
            config.resource, config.authorization_servers, supported, config.resource_name
        )
        self._metadata = json.dumps(document, separators=(",", ":")).encode()
        inserted, root = config.metadata_paths
        # Behind a proxy that strips a prefix the app sees its own path, not the public one.
        self.metadata_paths = frozenset(
            {inserted, root, root + "/" + app_path.strip("/") if app_path.strip("/") else root}
        )
        self._failures = (
            FailedVerifications(config.max_failed_verifications)
            if config.max_failed_verifications is not None
            else None
        )
        self._counts = dict.fromkeys((*OUTCOMES, "metadata_served"), 0)

    @property
    def verifier_to_run(self) -> RunnableVerifier | None:
        """The verifier, when it has I/O of its own for the app to run."""
        verifier = self.config.verifier
        return verifier if isinstance(verifier, RunnableVerifier) else None

    def statistics(self) -> AuthStatistics:
        own = getattr(self.config.verifier, "statistics", None)
        return AuthStatistics(
            **self._counts,
            failing_keys=self._failures.tracked_keys() if self._failures is not None else 0,
            verifier=own() if callable(own) else None,
        )

    # -- metadata ------------------------------------------------------------------

    async def serve_metadata(self, method: str, send: Send) -> None:
        """RFC 9728's document (GET, HEAD), a CORS preflight (OPTIONS), else 405."""
        if method == "OPTIONS":
            await _send_simple(send, 204, b"", _CORS)
            return
        if method not in ("GET", "HEAD"):
            raise _HTTPError(
                405, SERVER_ERROR, "Method Not Allowed", headers=[(b"allow", b"GET, HEAD, OPTIONS")]
            )
        self._counts["metadata_served"] += 1
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", f"public, max-age={self.config.metadata_max_age}".encode()),
            *_CORS,
        ]
        if method == "HEAD":
            length = str(len(self._metadata)).encode("ascii")
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*headers, (b"content-length", length)],
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await _send_simple(send, 200, self._metadata, headers)

    # -- the bearer check ----------------------------------------------------------

    async def authenticate(self, scope: Scope, info: RequestInfo) -> VerifiedToken:
        """The request's verified token, with the base scopes, or the refusal to send.

        Runs before the body is read: nothing about the request is held while
        the verifier works, and a refused request never reaches a session.
        """
        config = self.config
        authorization = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
        try:
            token = bearer_token(authorization, scope.get("query_string", b""))
        except MalformedCredentials as exc:
            self._counts["malformed"] += 1
            raise self._challenge(400, "invalid_request", str(exc)) from None
        if token is None:
            self._counts["missing"] += 1
            raise self._challenge(401, None, "this server needs an OAuth access token")
        key = self._failure_key(info) if self._failures is not None else None
        if self._failures is not None:
            wait = self._failures.retry_after(key, trio.current_time())
            if wait > 0:
                self._counts["throttled"] += 1
                seconds = max(1, math.ceil(wait))
                raise _HTTPError(
                    429,
                    SERVER_ERROR,
                    "Too Many Requests: too many requests with tokens that failed "
                    f"verification; retry in {seconds} s",
                    headers=[(b"retry-after", str(seconds).encode("ascii"))],
                    retry_after=seconds,
                )
        try:
            with trio.fail_after(config.verify_timeout):
                verified = await config.verifier.verify(token)
        except InvalidToken as exc:
            self._counts["invalid"] += 1
            if self._failures is not None:
                self._failures.record(key, trio.current_time())
            logger.info("access token refused: %s (client %s)", exc.reason, info.client_address)
            raise self._challenge(401, "invalid_token", exc.reason) from None
        except (VerifierUnavailable, trio.TooSlowError) as exc:
            self._counts["unavailable"] += 1
            reason = (
                exc.reason if isinstance(exc, VerifierUnavailable) else "verification timed out"
            )
            retry = exc.retry_after if isinstance(exc, VerifierUnavailable) else 5.0
            seconds = max(1, math.ceil(retry))
            logger.warning("cannot verify access tokens: %s", reason)
            raise _HTTPError(
                503,
                SERVER_ERROR,
                "Service Unavailable: the access token cannot be verified now; retry later",
                headers=[(b"retry-after", str(seconds).encode("ascii"))],
                retry_after=seconds,
            ) from None
        self._counts["verified"] += 1
        missing = missing_scopes(config.base_scopes, verified.scopes, config.scope_implies)
        if missing:
            self._counts["insufficient_scope"] += 1
            raise self._challenge(
                403, "insufficient_scope", "the access token lacks a scope", config.base_scopes
            )
        return verified

    def allows(self, token: VerifiedToken) -> Callable[[AbstractSet[str]], bool] | None:
        """For list filtering: whether *token* covers some scopes (``None``: no filtering)."""
        if not self.config.filter_lists:
            return None
        implies = self.config.scope_implies
        granted = token.scopes
        return lambda needed: not missing_scopes(needed, granted, implies)

    # -- the scope check -----------------------------------------------------------

    def check_scopes(self, messages: Sequence[Message], token: VerifiedToken) -> None:
        """403 naming every scope the requests of *messages* need, if the token lacks one.

        After JSON-RPC validation, before any session, task or slot: a batch
        is refused whole, its challenge the union of what its requests need.
        """
        config = self.config
        needed = config.base_scopes
        for message in messages:
            if isinstance(message, Request):
                needed = needed | self.scopes_for(message)
        if missing_scopes(needed, token.scopes, config.scope_implies):
            self._counts["insufficient_scope"] += 1
            request_id = (
                messages[0].id if len(messages) == 1 and isinstance(messages[0], Request) else None
            )
            raise self._challenge(
                403, "insufficient_scope", "the access token lacks a scope", needed, request_id
            )

    def scopes_for(self, request: Request) -> frozenset[str]:
        """The scopes *request* needs: base, its method's, its tool's."""
        tool: frozenset[str] = frozenset()
        if request.method == "tools/call" and self._server is not None:
            name = (request.params or {}).get("name")
            if isinstance(name, str):
                tool = self._server.tool_scopes(name)
        return operation_scopes(
            self.config.base_scopes, self.config.scopes_by_method, request.method, tool
        )

    def _challenge(
        self,
        status: int,
        error: str | None,
        description: str,
        scopes: AbstractSet[str] | None = None,
        request_id: str | int | None = None,
    ) -> _HTTPError:
        config = self.config
        shown = config.base_scopes if scopes is None else scopes
        header = www_authenticate(
            config.metadata_url,
            error=error,
            scopes=shown,
            description=description if error is not None else None,
        )
        reason = {401: "Unauthorized", 400: "Bad Request", 403: "Forbidden"}[status]
        data: dict[str, object] = {"resource_metadata": config.metadata_url}
        if error is not None:
            data["error"] = error
        if shown:
            data["scope"] = " ".join(sorted(shown))
        return _HTTPError(
            status,
            INVALID_REQUEST if status == 400 else UNAUTHORIZED,
            f"{reason}: {description}",
            request_id=request_id,
            headers=[(b"www-authenticate", header)],
            data=data,
        )
