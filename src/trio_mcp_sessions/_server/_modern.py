"""What a 2026-07-28 answer says beyond the handshake era's, sans-IO.

:class:`~._server.McpServer` answers both eras with the same handlers; at
2026-07-28 it asks these functions whether a request is of that era, whether
discovery declares the method at all, what ``server/discover`` says, and how a
handler's result is completed (``resultType``, serverInfo in ``_meta``, the
caching hint of the method or of the resource read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._protocol._era import (
    ADVERTISED_VERSIONS,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    REMOVED_METHODS,
)
from .._protocol._jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from ._caching import CACHEABLE_METHODS, CacheHint
from ._errors import McpError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._protocol._jsonrpc import Request

__all__ = [
    "check_cache_hints",
    "check_declared",
    "claims_modern",
    "complete_result",
    "discover_fields",
    "missing_resource",
]

#: At 2026-07-28 a method is "not found" unless discovery declares its capability.
_CAPABILITY_OF: Final = {
    "tools/list": "tools",
    "tools/call": "tools",
    "prompts/list": "prompts",
    "prompts/get": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resources",
    "resources/read": "resources",
    "completion/complete": "completions",
}


def claims_modern(request: Request) -> bool:
    """Whether *request* carries a ``_meta`` version claim (as every 2026-07-28 request does).

    The transport routes a request with a claim to the sessionless path, so
    a session never sees one; without a claim the request is the handshake
    era's and the peer is not even asked.
    """
    params = request.params
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and meta.get(META_PROTOCOL_VERSION) is not None


def check_cache_hints(
    cache: CacheHint, cache_hints: Mapping[str, CacheHint] | None
) -> dict[str, CacheHint]:
    """The server's per-method hints, checked: each a :class:`CacheHint`, each method cacheable.

    Raises:
        TypeError: *cache* or a hint is not a :class:`CacheHint`.
        ValueError: A method in *cache_hints* has no caching hints.
    """
    hints = dict(cache_hints or {})
    for method, hint in (("cache", cache), *hints.items()):
        if not isinstance(hint, CacheHint):
            raise TypeError(f"{method}: a CacheHint is required, got {type(hint).__name__}")
    unknown = sorted(set(hints) - CACHEABLE_METHODS)
    if unknown:
        raise ValueError(
            f"cache_hints: {', '.join(unknown)} has no caching hints; "
            f"cacheable are {', '.join(sorted(CACHEABLE_METHODS))}"
        )
    return hints


def check_declared(method: str, capabilities: Mapping[str, Any]) -> None:
    """Refuse (-32601) a removed method, or one whose capability discovery does not declare.

    What discovery does not declare is not there (the conformance suite
    checks both directions), whatever the handshake era did.
    """
    needed = _CAPABILITY_OF.get(method)
    if method in REMOVED_METHODS or (needed is not None and needed not in capabilities):
        raise McpError(METHOD_NOT_FOUND, f"Method not found: {method}")


def missing_resource(exc: McpError, method: str, params: Mapping[str, Any]) -> McpError:
    """The 2026-07-28 error for a handshake-era -32002 (*exc*): an invalid param.

    2026-07-28 retired -32002: a missing resource is an invalid param, with
    the URI in data (resources.mdx#error-handling).
    """
    data = exc.data
    uri = params.get("uri")
    if method == "resources/read" and isinstance(uri, str):
        data = {"uri": uri, **(data if isinstance(data, dict) else {})}
    return McpError(INVALID_PARAMS, exc.message, data)


def discover_fields(capabilities: dict[str, Any], instructions: str | None) -> dict[str, Any]:
    """``server/discover``'s own fields, before :func:`complete_result`.

    ``supportedVersions`` is what an unsupported version's -32022 lists too.
    """
    result: dict[str, Any] = {
        "supportedVersions": list(ADVERTISED_VERSIONS),
        "capabilities": capabilities,
    }
    if instructions is not None:
        result["instructions"] = instructions
    return result


def complete_result(
    method: str, result: Mapping[str, Any], server_info: dict[str, Any], hint: CacheHint
) -> dict[str, Any]:
    """*result* as a 2026-07-28 result: a new dict, the handler's own left as it was.

    *hint* goes on a complete result of a cacheable method only.
    """
    out: dict[str, Any] = {"resultType": "complete", **result}
    meta = result.get("_meta")
    out["_meta"] = {
        META_SERVER_INFO: server_info,
        **(meta if isinstance(meta, dict) else {}),
    }
    # Never on an input_required (or other) result: only complete ones are cacheable.
    if out["resultType"] == "complete" and method in CACHEABLE_METHODS:
        out.update(hint.to_json())
    return out
