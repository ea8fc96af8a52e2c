"""HTTP-level checks of Streamable HTTP, sans-IO: Accept, Content-Type, Host, Origin, SSE."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "LOOPBACK_HOSTS",
    "HostPolicy",
    "accepts",
    "encode_sse",
    "is_json_content_type",
    "is_loopback",
    "split_host",
    "valid_authority",
]

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def _media_ranges(accept: str) -> list[str]:
    ranges = []
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        # An explicit q=0 means "not acceptable".
        if any(
            p.strip().replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000")
            for p in params.split(";")
        ):
            continue
        if media:
            ranges.append(media)
    return ranges


@functools.lru_cache(maxsize=256)
def accepts(accept: str | None, media_type: str) -> bool:
    """Whether an ``Accept`` header admits *media_type* (wildcards included).

    Cached: clients send the same few ``Accept`` values on every request.
    """
    if not accept:
        return False
    main = media_type.split("/", 1)[0]
    return any(media in (media_type, "*/*", f"{main}/*") for media in _media_ranges(accept))


def is_json_content_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


def split_host(host: str) -> tuple[str, int | None]:
    """``"example.com:80"`` → ``("example.com", 80)``; IPv6 keeps its brackets.

    A port that is not 1-5 ASCII digits (``"²"`` passes ``str.isdigit()``,
    5,000 digits break ``int()``) comes back as ``None``, like a missing one,
    and so never equals a configured port.
    """
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return host, None
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    valid = 0 < len(port) <= 5 and port.isascii() and port.isdigit()
    return name, int(port) if valid else None


def valid_authority(authority: str) -> bool:
    """Whether a ``Host`` value (or an origin's ``host[:port]``) is well formed.

    A name (or a bracketed IPv6 address), then at most ``:`` and a port of up
    to 5 ASCII digits (RFC 9110 allows an empty one). Anything else is not a
    host we could be: ``127.0.0.1:²``, a 5,000-digit port, spaces, controls.
    """
    if not authority or not authority.isascii() or not authority.isprintable() or " " in authority:
        return False
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            return False
        rest = authority[end + 1 :]
        if not rest:
            return True
        if not rest.startswith(":"):
            return False
        port = rest[1:]
    else:
        name, sep, port = authority.partition(":")
        if not name or ":" in port:
            return False
        if not sep:
            return True
    return port == "" or (len(port) <= 5 and port.isdigit())


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    if address.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _matches(host: str, patterns: Iterable[str]) -> bool:
    name, port = split_host(host)
    for pattern in patterns:
        p_name, p_port = split_host(pattern)
        wildcard_port = pattern.endswith(":*")
        if p_name in ("*",):
            return True
        if p_name.startswith("*.") and name.endswith(p_name[1:]):
            pass
        elif p_name != name:
            continue
        if wildcard_port or p_port is None or p_port == port:
            return True
    return False


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """DNS-rebinding protection: which ``Host`` and ``Origin`` values are served.

    Attributes:
        allowed_hosts: ``Host`` values (``name``, ``name:port`` or ``name:*``;
            ``*.example.com`` for subdomains; ``*`` for any). ``None`` means:
            loopback names only when the server is bound to loopback, else any.
        allowed_origins: Origins (``scheme://host[:port]``, port ``*`` allowed).
            ``None`` means: an origin whose host is an allowed ``Host`` (so
            configuring *allowed_hosts* admits browsers of those hosts), else
            loopback origins when bound to loopback, else the origin must be
            the same host as ``Host``.
    """

    allowed_hosts: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] | None = None

    def host_allowed(self, host: str | None, server_address: str | None) -> bool:
        if self.allowed_hosts is not None:
            return host is not None and _matches(host, self.allowed_hosts)
        if is_loopback(server_address):
            return host is not None and split_host(host)[0] in LOOPBACK_HOSTS
        return True

    def origin_allowed(
        self, origin: str | None, host: str | None, server_address: str | None
    ) -> bool:
        if origin is None:
            return True  # not a browser; Host is checked separately
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if not parts.scheme or not parts.hostname or not valid_authority(parts.netloc):
            return False
        origin_host = parts.netloc.lower()
        if self.allowed_origins is not None:
            for allowed in self.allowed_origins:
                a = urlsplit(allowed)
                if a.scheme == parts.scheme and _matches(origin_host, [a.netloc.lower()]):
                    return True
            return False
        name = split_host(origin_host)[0]
        if self.allowed_hosts is not None and _matches(name, self.allowed_hosts):
            return True
        if is_loopback(server_address):
            return name in LOOPBACK_HOSTS
        return host is not None and split_host(host)[0] == name


def encode_sse(event_id: str | None, data: bytes, retry_ms: int | None = None) -> bytes:
    """One SSE event (``event: message``). Empty *data* with an id is a priming event."""
    parts = []
    if event_id is not None:
        parts.append(b"id: " + event_id.encode("ascii"))
    if retry_ms is not None:
        parts.append(b"retry: %d" % retry_ms)
    if data:
        parts.append(b"event: message")
        # JSON from our encoder has no raw newlines, but be safe with any payload.
        for line in data.split(b"\n"):
            parts.append(b"data: " + line)
    elif event_id is not None:
        parts.append(b"data: ")
    return b"\n".join(parts) + b"\n\n"
