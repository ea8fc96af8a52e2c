"""The resource server's configuration: the resource, the servers it trusts, the scopes it needs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .._protocol._oauth import SCOPE_TOKEN
from .._ratelimit import RateLimit
from ._challenge import canonical_resource, metadata_paths, metadata_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._types import TokenVerifier

__all__ = ["DEFAULT_FAILED_VERIFICATIONS", "ResourceServer"]

#: Failed verifications a client key may have per minute before its requests
#: are refused unverified (429): a client with an expired token fails once and
#: refreshes; one that keeps sending bad tokens is not worth a JWKS fetch each.
DEFAULT_FAILED_VERIFICATIONS: Final = RateLimit(30, 60.0)


def _scopes(name: str, value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError(f"{name} must be a collection of scope names, not the string {value!r}")
    scopes = frozenset(value)
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"{name}: {scope!r} is not a valid OAuth scope")
    return scopes


@dataclass(frozen=True, slots=True)
class ResourceServer:
    """This server as an OAuth 2.1 resource server (MCP Authorization; RFC 9728, 6750, 8707).

    Every request of both eras then needs a bearer token that *verifier*
    accepts, checked before the body is read or a session looked up; the
    verified caller ``(iss, sub, client_id)`` owns the session and the
    handles, and ``(iss, sub)`` is the key of every per-client limit.

    Attributes:
        resource: This endpoint's URL as clients reach it (``https://host/mcp``),
            the ``resource`` of the metadata and the audience tokens must name.
            Canonicalized (lower-case scheme and host, no trailing ``/``).
            Behind a proxy it is the public URL, never derived from ``Host``.
        authorization_servers: Issuer URLs of the authorization servers
            clients should use (at least one).
        verifier: Checks each token (:class:`JwtVerifier`,
            :class:`IntrospectionVerifier` or your own :class:`TokenVerifier`).
        scopes: Scopes every request needs (``initialize``, GET, DELETE, and
            every call); the 401 challenge names them.
        method_scopes: Extra scopes per JSON-RPC method, e.g.
            ``{"resources/read": {"notes:read"}}``. A tool's own come from
            ``@server.tool(scopes=...)``.
        scope_implies: ``fn(granted, needed) -> bool``: whether a granted scope
            covers a needed one (a hierarchy: ``notes`` implies ``notes:read``).
            Without it a scope covers only itself.
        scopes_supported: The metadata's ``scopes_supported``; ``None`` lists
            every scope this configuration and the server's tools name.
        resource_name: The metadata's human-readable ``resource_name``.
        filter_lists: List only the tools the caller's scopes allow. Off by
            default: a client that sees a tool knows to step up for it.
        max_failed_verifications: Failed verifications per client key (the
            peer address, or the transport's ``rate_limit_key`` on the
            unauthenticated request) per window before that key's requests
            are refused unverified with 429; ``None`` turns it off.
        metadata_max_age: ``Cache-Control: max-age`` of the metadata document.
        verify_timeout: Seconds one verification may take, fetches included;
            past it the request gets 503 + ``Retry-After`` (never a 401).
    """

    resource: str
    authorization_servers: Iterable[str]
    verifier: TokenVerifier
    scopes: Iterable[str] = frozenset()
    method_scopes: Mapping[str, Iterable[str]] = field(default_factory=dict)
    scope_implies: Callable[[str, str], bool] | None = None
    scopes_supported: Iterable[str] | None = None
    resource_name: str | None = None
    filter_lists: bool = False
    max_failed_verifications: RateLimit | None = DEFAULT_FAILED_VERIFICATIONS
    metadata_max_age: int = 3600
    verify_timeout: float = 10.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "resource", canonical_resource(self.resource))
        servers = (
            (self.authorization_servers,)
            if isinstance(self.authorization_servers, str)
            else tuple(self.authorization_servers)
        )
        if not servers:
            raise ValueError("authorization_servers needs at least one issuer URL")
        for server in servers:
            if not isinstance(server, str) or not server.startswith(("https://", "http://")):
                raise ValueError(f"authorization server {server!r} is not an http(s) URL")
        set_(self, "authorization_servers", servers)
        if not callable(getattr(self.verifier, "verify", None)):
            raise TypeError(f"verifier must have an async verify(token), got {self.verifier!r}")
        set_(self, "scopes", _scopes("scopes", self.scopes))
        set_(
            self,
            "method_scopes",
            {
                method: _scopes(f"method_scopes[{method!r}]", scopes)
                for method, scopes in self.method_scopes.items()
            },
        )
        if self.scopes_supported is not None:
            set_(self, "scopes_supported", _scopes("scopes_supported", self.scopes_supported))
        if self.scope_implies is not None and not callable(self.scope_implies):
            raise TypeError("scope_implies must be fn(granted, needed) -> bool")
        if self.max_failed_verifications is not None and not isinstance(
            self.max_failed_verifications, RateLimit
        ):
            raise TypeError("max_failed_verifications must be a RateLimit or None")
        if isinstance(self.metadata_max_age, bool) or not isinstance(self.metadata_max_age, int):
            raise TypeError("metadata_max_age must be an int of seconds")
        if self.metadata_max_age < 0:
            raise ValueError("metadata_max_age must not be negative")
        timeout = self.verify_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError("verify_timeout must be a number of seconds")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"verify_timeout must be positive and finite, got {timeout}")

    @property
    def base_scopes(self) -> frozenset[str]:
        """:attr:`scopes` as the frozen set it became."""
        assert isinstance(self.scopes, frozenset)
        return self.scopes

    @property
    def scopes_by_method(self) -> Mapping[str, frozenset[str]]:
        """:attr:`method_scopes` with each value a frozen set."""
        return self.method_scopes  # type: ignore[return-value]  # made so in __post_init__

    @property
    def metadata_url(self) -> str:
        """Where clients find the metadata: named in every challenge's ``resource_metadata``."""
        return metadata_url(self.resource)

    @property
    def metadata_paths(self) -> tuple[str, str]:
        """``(path-inserted, root)`` well-known paths, both served."""
        return metadata_paths(self.resource)
