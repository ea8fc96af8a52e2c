"""Caching hints (``ttlMs``, ``cacheScope``) on 2026-07-28 results.

MCP 2026-07-28 requires them on the complete results of discovery, the lists
and ``resources/read``, so a client (or a shared gateway) knows how long it may
reuse an answer and whether it may share it between callers. The handshake era
has no such fields; we never send them there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, final

__all__ = ["CACHEABLE_METHODS", "DEFAULT_CACHE_HINT", "CacheHint"]

#: The methods whose complete results carry caching hints (``server/utilities/caching``).
CACHEABLE_METHODS: Final = frozenset(
    {
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
    }
)
#: ``ttlMs`` is a JSON number: keep it exact for every client (JavaScript's safe integers).
_MAX_TTL_MS: Final = 2**53 - 1


@final
@dataclass(frozen=True, slots=True)
class CacheHint:
    """How long a client may reuse a result, and with whom it may share it.

    The default, ``ttl_ms=0`` and ``"private"``, promises nothing: the result
    is stale at once and never shared across authorization contexts. Raise
    the TTL and say ``"public"`` only for what is the same for every caller
    (``cacheScope`` is a hint to caches, never access control).

    Args:
        ttl_ms: Milliseconds the result stays fresh (``ttlMs``), at least 0.
        scope: ``"public"`` (any cache may share it between users) or
            ``"private"`` (only within the same authorization context).

    Raises:
        TypeError: *ttl_ms* is not an int.
        ValueError: *ttl_ms* is negative or too large, or *scope* is unknown.
    """

    ttl_ms: int = 0
    scope: Literal["public", "private"] = "private"

    def __post_init__(self) -> None:
        if isinstance(self.ttl_ms, bool) or not isinstance(self.ttl_ms, int):
            raise TypeError(f"ttl_ms must be an int, got {type(self.ttl_ms).__name__}")
        if not 0 <= self.ttl_ms <= _MAX_TTL_MS:
            raise ValueError(f"ttl_ms must be between 0 and {_MAX_TTL_MS}, got {self.ttl_ms}")
        if self.scope not in ("public", "private"):
            raise ValueError(f'scope must be "public" or "private", got {self.scope!r}')

    def to_json(self) -> dict[str, Any]:
        """The result fields: ``{"ttlMs": ..., "cacheScope": ...}``."""
        return {"ttlMs": self.ttl_ms, "cacheScope": self.scope}


#: What the server says when it was told nothing (python-sdk's default too).
DEFAULT_CACHE_HINT: Final = CacheHint()
