"""Authorization server metadata (RFC 8414, OpenID Connect Discovery), with the issuer check.

The URLs and the document's checks are sans-IO; :func:`discover_metadata` is
the one function here that fetches. A document whose ``issuer`` is not the
configured issuer, character for character, is refused (RFC 8414 §3.3; the
MCP spec's 2026-07-28 discovery section): otherwise whoever can answer on a
well-known path could name the keys (or the introspection endpoint) of
another issuer.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._http import FetchError, request_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

__all__ = [
    "AuthorizationServerMetadata",
    "MetadataError",
    "check_http_url",
    "discover_metadata",
    "metadata_urls",
    "parse_metadata",
]

logger = logging.getLogger("trio_mcp_sessions.auth")


class MetadataError(ValueError):
    """A metadata document that must not be used; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class AuthorizationServerMetadata:
    """What the verifiers read from an authorization server's metadata document.

    Attributes:
        issuer: ``issuer``, equal to the configured issuer.
        jwks_uri: Where its signing keys are (for :class:`JwtVerifier`).
        introspection_endpoint: RFC 7662 endpoint (for :class:`IntrospectionVerifier`).
        introspection_auth_methods: ``introspection_endpoint_auth_methods_supported``.
        source: The URL the document came from.
        document: The whole document.
    """

    issuer: str
    jwks_uri: str | None = None
    introspection_endpoint: str | None = None
    introspection_auth_methods: tuple[str, ...] = ()
    source: str = ""
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def check_http_url(url: object, what: str) -> str:
    """*url* if it is an absolute http(s) URL without a fragment, else :exc:`MetadataError`."""
    if not isinstance(url, str):
        raise MetadataError(f"{what} is not a string")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise MetadataError(f"{what} is not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise MetadataError(f"{what} is not an absolute http(s) URL")
    return url


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where *issuer*'s metadata may be, in the order MCP clients try them.

    RFC 8414 §3.1 inserts the well-known segment before the issuer's path;
    OpenID Connect Discovery appends it; an issuer without a path has one
    form of each.
    """
    check_http_url(issuer, "the issuer")
    parts = urllib.parse.urlsplit(issuer)
    if parts.query:
        raise MetadataError("the issuer has a query")
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return (
            f"{origin}/.well-known/oauth-authorization-server",
            f"{origin}/.well-known/openid-configuration",
        )
    return (
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    )


def parse_metadata(document: object, issuer: str, source: str = "") -> AuthorizationServerMetadata:
    """The checked metadata of *document*, which must be *issuer*'s own.

    Raises:
        MetadataError: Not a JSON object, another ``issuer`` (RFC 8414 §3.3),
            or a malformed endpoint.
    """
    if not isinstance(document, dict):
        raise MetadataError("the metadata is not a JSON object")
    if document.get("issuer") != issuer:
        raise MetadataError("the metadata names another issuer than the configured one")
    jwks_uri = document.get("jwks_uri")
    endpoint = document.get("introspection_endpoint")
    methods = document.get("introspection_endpoint_auth_methods_supported", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise MetadataError("introspection_endpoint_auth_methods_supported is not a string list")
    return AuthorizationServerMetadata(
        issuer=issuer,
        jwks_uri=None if jwks_uri is None else check_http_url(jwks_uri, "jwks_uri"),
        introspection_endpoint=(
            None if endpoint is None else check_http_url(endpoint, "introspection_endpoint")
        ),
        introspection_auth_methods=tuple(methods),
        source=source,
        document=document,
    )


async def discover_metadata(
    client: httpx.AsyncClient, issuer: str, *, timeout: float, max_bytes: int
) -> AuthorizationServerMetadata:
    """Fetch *issuer*'s metadata from the first well-known URL that has a usable document.

    A 4xx or a refused document moves on to the next URL; an unreachable
    server or a 5xx ends the search (every URL is on the same host).

    Raises:
        FetchError: No URL had a usable document.
    """
    reasons: list[str] = []
    for url in metadata_urls(issuer):
        try:
            document = await request_json(client, "GET", url, timeout=timeout, max_bytes=max_bytes)
            return parse_metadata(document, issuer, url)
        except FetchError as exc:
            if exc.status is None or exc.status >= 500:
                raise
            reasons.append(exc.reason)
        except MetadataError as exc:
            logger.warning("authorization server metadata at %s refused: %s", url, exc)
            reasons.append(f"{url}: {exc}")
    raise FetchError("no usable authorization server metadata: " + "; ".join(reasons))
