"""What an OAuth 2.1 resource server is made of: the verified token, the verifier, the errors.

Plain data and protocols only (no I/O): the transport asks a
:class:`TokenVerifier` for a :class:`VerifiedToken` and turns its errors into
the challenges of RFC 6750 and the MCP Authorization spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Mapping

    import trio

__all__ = [
    "InvalidToken",
    "RunnableVerifier",
    "TokenVerifier",
    "VerifiedToken",
    "VerifierUnavailable",
]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """An access token that passed verification, without the token itself.

    Handlers and logs see this, never the bearer string (so nothing can pass
    it upstream by accident).

    Attributes:
        issuer: ``iss``: the authorization server that issued it (exactly as configured).
        subject: ``sub``: the user (or client, for ``client_credentials``); unique per issuer.
        client_id: The OAuth client the token was issued to, if the token says.
        scopes: The granted scopes.
        audience: ``aud``: the resources the token was issued for (this one among them).
        expires_at: ``exp`` as POSIX seconds, or ``None`` if the token never expires.
        token_id: ``jti``, or another id safe to log; never the token.
        claims: Every claim (JWT) or introspection field, for the application's own checks.
    """

    issuer: str
    subject: str | None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    audience: tuple[str, ...] = ()
    expires_at: float | None = None
    token_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def principal(self) -> str:
        """``(iss, sub, client_id)`` as one string, injectively (``sub`` is unique per issuer only).

        A session, a handle and a per-principal bound belong to this: it
        stays the same across refresh and step-up, so those keep the session.
        """
        parts = ["oauth", self.issuer, self.subject, self.client_id]
        return json.dumps(parts, separators=(",", ":"))

    @property
    def rate_limit_key(self) -> str:
        """``(iss, sub)``: the default key of every per-client limit.

        Never ``client_id`` beside a subject: anyone can mint a client id
        (dynamic registration, metadata documents), but not a user at this
        issuer. A token without ``sub`` (``client_credentials`` at some
        servers) is the client's own, so it keys on the client the issuer
        gave it to, not on one bucket for every such client.
        """
        if self.subject is None:
            parts = ["oauth-client", self.issuer, self.client_id]
        else:
            parts = ["oauth", self.issuer, self.subject]
        return json.dumps(parts, separators=(",", ":"))


class InvalidToken(Exception):
    """The token is not valid for this server: bad signature, expired, wrong issuer/audience/type.

    The transport answers 401 ``error="invalid_token"``. *reason* is for the
    server's log and for ``error_description``: a fixed phrase, never the
    token or anything else taken from it unchecked.
    """

    def __init__(self, reason: str = "the access token is not valid") -> None:
        super().__init__(reason)
        self.reason = reason


class VerifierUnavailable(Exception):
    """The verifier could not reach what it needs (JWKS, AS metadata, introspection).

    The transport answers 503 with ``Retry-After``, never a 401: a 401 would
    send a client with a good token into a pointless re-authorization.
    """

    def __init__(self, reason: str, *, retry_after: float = 5.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TokenVerifier(Protocol):
    """Checks a bearer token: signature or introspection, issuer, audience, expiry, type."""

    async def verify(self, token: str) -> VerifiedToken:
        """The token's verified facts, or :exc:`InvalidToken` / :exc:`VerifierUnavailable`."""
        ...


@runtime_checkable
class RunnableVerifier(TokenVerifier, Protocol):
    """A verifier with I/O of its own (an HTTP client, a cache refresher).

    The app starts :meth:`run` in its own nursery, like the session manager,
    and verification waits for it (within a deadline) until it has started.
    """

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Open what the verifier needs, call ``task_status.started()``, serve until cancelled."""
        ...
