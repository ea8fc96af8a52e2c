"""The resource server's HTTP arithmetic, sans I/O: credentials, challenges, metadata, scopes.

Everything here is a pure function of headers, configuration and the
verified token, so the whole challenge table (RFC 6750 §3, the MCP
Authorization spec) is testable without a socket.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import urlsplit, urlunsplit

from .._ratelimit import RateLimit, SlidingWindow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "FailedVerifications",
    "MalformedCredentials",
    "bearer_token",
    "canonical_resource",
    "metadata_paths",
    "protected_resource_metadata",
    "scope_satisfied",
    "www_authenticate",
]

#: RFC 6750 §2.1 ``b64token``: what a bearer token may be made of.
B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Longer than any access token an authorization server issues (JWTs with many
#: claims stay under 8 KiB), shorter than what a parser would be asked to chew.
MAX_TOKEN_LENGTH: Final = 16 * 1024
WELL_KNOWN: Final = "/.well-known/oauth-protected-resource"


class MalformedCredentials(ValueError):
    """The request carries credentials in a way RFC 6750 forbids: 400 ``invalid_request``."""


def bearer_token(authorization: list[bytes], query_string: bytes = b"") -> str | None:
    """The bearer token of a request, ``None`` when it has none (a 401 without ``error``).

    *authorization* is every ``Authorization`` header value the request
    carries. A token is taken from that header only: one in the query
    (``access_token=``) is refused, never used (MCP: "MUST NOT" in the URI).

    Raises:
        MalformedCredentials: Two ``Authorization`` headers, ``Bearer`` with no
            token or one that is not a ``b64token``, a token in the query.
    """
    if query_string and _has_query_token(query_string):
        raise MalformedCredentials("access tokens are accepted in the Authorization header only")
    if not authorization:
        return None
    if len(authorization) > 1:
        raise MalformedCredentials("more than one Authorization header")
    value = authorization[0].decode("latin-1").strip()
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None  # another scheme (Basic, ...): as if there were no credentials
    token = token.strip(" ")
    if not token:
        raise MalformedCredentials("Bearer without a token")
    if not looks_like_bearer_token(token):
        raise MalformedCredentials("the bearer token is not well formed")
    return token


def looks_like_bearer_token(token: object, max_length: int = MAX_TOKEN_LENGTH) -> bool:
    """Whether *token* is a plausible RFC 6750 token (the transport's check, and the verifiers')."""
    return (
        isinstance(token, str)
        and 0 < len(token) <= max_length
        and B64TOKEN.fullmatch(token) is not None
    )


def _has_query_token(query_string: bytes) -> bool:
    for pair in query_string.split(b"&"):
        if pair.partition(b"=")[0].strip().lower() == b"access_token":
            return True
    return False


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string (our values are printable ASCII by construction)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def www_authenticate(
    resource_metadata: str,
    *,
    error: str | None = None,
    scopes: Iterable[str] = (),
    description: str | None = None,
) -> bytes:
    """A ``WWW-Authenticate: Bearer ...`` value; *error* ``None`` for a request without credentials.

    ``resource_metadata`` is always there (clients find the metadata by it,
    RFC 9728 §5.1), and ``scope`` whenever there are scopes (clients take it
    as the scopes to ask for).
    """
    params: list[str] = []
    if error is not None:
        params.append(f"error={_quoted(error)}")
    scope = " ".join(sorted(set(scopes)))
    if scope:
        params.append(f"scope={_quoted(scope)}")
    params.append(f"resource_metadata={_quoted(resource_metadata)}")
    if description is not None and error is not None:
        params.append(f"error_description={_quoted(_printable(description))}")
    return ("Bearer " + ", ".join(params)).encode("ascii")


def _printable(text: str) -> str:
    # error_description: %x20-21 / %x23-5B / %x5D-7E (RFC 6749 §5.2); ours are
    # fixed phrases, but a verifier's own reason passes through here too.
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')[:200]


def canonical_resource(url: str) -> str:
    """*url* as the canonical server URI: lower-case scheme and host, no fragment or trailing /.

    Raises:
        ValueError: Not an absolute http(s) URL, or one with a query.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"resource must be an absolute http(s) URL, got {url!r}")
    if parts.query:
        raise ValueError(f"resource must have no query, got {url!r}")
    if "@" in parts.netloc:
        raise ValueError(f"resource must have no user information, got {url!r}")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, "", ""))


def metadata_paths(resource: str) -> tuple[str, str]:
    """``(path-inserted, root)`` paths of the Protected Resource Metadata (RFC 9728 §3.1)."""
    path = urlsplit(resource).path.rstrip("/")
    return (WELL_KNOWN + path, WELL_KNOWN)


def metadata_url(resource: str) -> str:
    """The URL clients are sent to: the path-inserted form on the resource's own origin."""
    parts = urlsplit(resource)
    return urlunsplit((parts.scheme, parts.netloc, metadata_paths(resource)[0], "", ""))


def protected_resource_metadata(
    resource: str,
    authorization_servers: Iterable[str],
    scopes_supported: Iterable[str],
    resource_name: str | None,
) -> dict[str, Any]:
    """The RFC 9728 document: ``resource`` exactly the endpoint URL, at both well-known paths.

    ``offline_access`` is never listed (MCP 2026-07-28: a refresh token is the
    authorization server's business, not a scope of this resource).
    """
    document: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": list(authorization_servers),
        "bearer_methods_supported": ["header"],
    }
    scopes = sorted(s for s in set(scopes_supported) if s != "offline_access")
    if scopes:
        document["scopes_supported"] = scopes
    if resource_name is not None:
        document["resource_name"] = resource_name
    return document


def scope_satisfied(
    needed: str, granted: frozenset[str], implies: Callable[[str, str], bool] | None
) -> bool:
    """Whether *granted* covers *needed*: the scope itself, or one the hierarchy says implies it."""
    if needed in granted:
        return True
    return implies is not None and any(implies(have, needed) for have in granted)


def missing_scopes(
    needed: Iterable[str], granted: frozenset[str], implies: Callable[[str, str], bool] | None
) -> frozenset[str]:
    """The scopes of *needed* that *granted* does not cover (empty: the operation may run)."""
    return frozenset(s for s in needed if not scope_satisfied(s, granted, implies))


def operation_scopes(
    base: frozenset[str],
    method_scopes: Mapping[str, frozenset[str]],
    method: str | None,
    tool_scopes: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """Every scope an operation needs: the base ones, its method's, its tool's."""
    needed = base | tool_scopes
    if method is not None:
        needed |= method_scopes.get(method, frozenset())
    return needed


@final
class FailedVerifications:
    """Failed verifications per client key in a sliding window, a bounded number of keys.

    Over the limit a key's requests are refused (429) before the verifier
    runs: bad tokens cannot be turned into JWKS refetches or introspection
    calls faster than this. Keys are forgotten least-recently-used first.
    """

    __slots__ = ("_keys", "limit", "max_keys", "refused")

    def __init__(self, limit: RateLimit, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._keys: OrderedDict[str | None, SlidingWindow] = OrderedDict()
        #: Requests refused because their key failed too often.
        self.refused = 0

    def retry_after(self, key: str | None, now: float) -> float:
        """0 when *key* may try a token now, else the seconds until it may."""
        window = self._keys.get(key)
        if window is None:
            return 0.0
        wait = window.retry_after(now)
        if wait <= 0 and not window.stamps:
            del self._keys[key]
        return wait

    def record(self, key: str | None, now: float) -> None:
        """Count one failed verification of *key*."""
        window = self._keys.get(key)
        if window is None:
            window = self._keys[key] = SlidingWindow(self.limit)
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        window.retry_after(now)  # drops what the window no longer counts
        window.record(now)

    def tracked_keys(self) -> int:
        return len(self._keys)
