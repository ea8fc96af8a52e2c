"""Opaque access tokens checked by asking the authorization server (RFC 7662).

Every answer is cached by the SHA-256 of the token (never the token): an
active one until ``min(exp - now, cache_ttl)``, an inactive one for
``negative_ttl``, each in a bounded LRU of its own so a flood of bad tokens
cannot push the good ones out. Concurrent verifications of one token share
one request. The requests run in the verifier's own nursery (see
:meth:`IntrospectionVerifier.run`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from ._challenge import MAX_TOKEN_LENGTH, looks_like_bearer_token
from ._http import (
    ClientRunner,
    FetchError,
    import_httpx,
    request_json,
)
from ._jwt import _audiences, check_claims
from ._metadata import MetadataError, check_http_url, discover_metadata, metadata_urls
from ._outcomes import VerifyOutcomes
from ._types import InvalidToken, VerifiedToken, VerifierUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import httpx

__all__ = [
    "IntrospectionVerifier",
    "IntrospectionVerifierStatistics",
    "check_introspection",
]

logger = logging.getLogger("trio_mcp_sessions.auth")

#: ``token_type`` values of a bearer access token (RFC 7662 §2.2 uses RFC 6749 §7.1's names).
_BEARER_TYPES = frozenset({"bearer", "access_token"})
#: 400 answers about the token, not about us: the AS will not vouch for it, so it
#: is invalid (401, cached as inactive), not an outage (oidc-provider answers
#: ``unsupported_token_type`` for its own JWT access tokens, RFC 7009 §2.2.1).
_TOKEN_ERRORS = frozenset({"unsupported_token_type", "invalid_token"})


def check_introspection(
    answer: object,
    *,
    issuer: str,
    audiences: Collection[str],
    now: float,
    leeway: float,
    require_audience: bool,
) -> VerifiedToken:
    """The verified token of an introspection *answer*, or :exc:`InvalidToken` (sans-IO).

    ``active`` must be ``true``; ``iss``, when present, the issuer; ``aud``
    must name this resource (absent only with ``require_audience=False``);
    ``exp`` and ``nbf``, when present, hold; a ``token_type`` other than
    bearer (a refresh or a DPoP-bound token) is refused.

    Raises:
        MetadataError: The answer is not a JSON object (the AS is broken, not the token).
    """
    if not isinstance(answer, dict):
        raise MetadataError("the introspection answer is not a JSON object")
    if answer.get("active") is not True:
        raise InvalidToken("the token is not active")
    token_type = answer.get("token_type")
    if token_type is not None and (
        not isinstance(token_type, str) or token_type.lower() not in _BEARER_TYPES
    ):
        raise InvalidToken("the token is not a bearer access token")
    return check_claims(
        answer,
        issuer=issuer,
        audiences=tuple(audiences),
        now=now,
        leeway=leeway,
        require_audience=require_audience,
        require_exp=False,
    )


@dataclass(frozen=True, slots=True)
class IntrospectionVerifierStatistics:
    """What an :class:`IntrospectionVerifier` has done (counters since it was made).

    Attributes:
        verified: Tokens accepted (cached answers included).
        invalid: Tokens refused (``InvalidToken``).
        unavailable: Verifications that could not finish (``VerifierUnavailable``).
        introspections: Requests sent to the introspection endpoint.
        introspection_failures: Of those, how many got no usable answer.
        cache_hits: Verifications answered from the cache (active or inactive).
        cache_misses: Verifications that needed a request (or joined one in flight).
        refused_busy: Verifications refused because ``max_inflight`` requests were out.
        inflight: Introspection requests out now.
        cached_active: Active answers in the cache now.
        cached_inactive: Inactive answers in the cache now.
    """

    verified: int
    invalid: int
    unavailable: int
    introspections: int
    introspection_failures: int
    cache_hits: int
    cache_misses: int
    refused_busy: int
    inflight: int
    cached_active: int
    cached_inactive: int


class _Lookup:
    """One introspection request that every verification of the same token shares."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: VerifiedToken | InvalidToken | None = None
        self.failure = "the verifier stopped during an introspection"


class _Cache:
    """A bounded LRU of answers by token hash, each with a deadline on trio's clock."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: bytes, value: Any, until: float) -> None:
        if self.max_entries <= 0:
            return
        self._entries[key] = (until, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class IntrospectionVerifier:
    """Verifies opaque access tokens by RFC 7662 introspection, with a bounded cache.

    Start :meth:`run` in a nursery (``StreamableHTTPApp`` does it for a
    configured resource server); :meth:`verify` waits up to *start_timeout*
    for it, then answers :exc:`VerifierUnavailable` (a 503, not a 500).

    Args:
        issuer: The authorization server's issuer identifier; ``iss`` in an
            answer must equal it, and it is the verified token's ``issuer``.
        audience: This resource's identifier (or several); the answer's ``aud`` must name one.
        client_id: This resource server's client id at the authorization server.
        client_secret: Its secret (``client_secret_basic`` by default).
        introspection_endpoint: The endpoint; ``None`` discovers it from the
            issuer's metadata, whose ``issuer`` must match.
        client_auth: ``"client_secret_basic"`` or ``"client_secret_post"``.
        require_audience: Refuse answers without ``aud``; ``False`` accepts
            them (only for an AS that never says, and issues tokens for this resource only).
        cache_ttl: Longest time an active answer is reused (never past ``exp``).
        negative_ttl: How long an inactive answer is reused.
        max_cached: Most active answers kept (least recently used go first).
        max_cached_invalid: Most inactive answers kept.
        max_inflight: Most introspection requests at once (distinct tokens);
            beyond it a verification that needs one is unavailable (503) at once.
        leeway: Seconds of clock skew allowed on ``exp`` and ``nbf``.
        http_timeout: Deadline in seconds of every request to the issuer.
        max_response_bytes: Largest metadata or introspection answer read.
        start_timeout: How long :meth:`verify` waits for :meth:`run` to start.
        clock: Wall-clock time in POSIX seconds (for ``exp``); TTLs use trio's clock.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Collection[str],
        *,
        client_id: str,
        client_secret: str,
        introspection_endpoint: str | None = None,
        client_auth: Literal["client_secret_basic", "client_secret_post"] = ("client_secret_basic"),
        require_audience: bool = True,
        cache_ttl: float = 60.0,
        negative_ttl: float = 5.0,
        max_cached: int = 10_000,
        max_cached_invalid: int = 1_000,
        max_inflight: int = 100,
        leeway: float = 60.0,
        http_timeout: float = 5.0,
        max_response_bytes: int = 64 * 1024,
        start_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import_httpx()
        metadata_urls(issuer)  # checks the issuer's form
        if introspection_endpoint is not None:
            check_http_url(introspection_endpoint, "introspection_endpoint")
        if client_auth not in ("client_secret_basic", "client_secret_post"):
            raise ValueError("client_auth must be client_secret_basic or client_secret_post")
        if not client_id:
            raise ValueError("client_id must not be empty")
        for name, value in (
            ("cache_ttl", cache_ttl),
            ("negative_ttl", negative_ttl),
            ("leeway", leeway),
            ("http_timeout", http_timeout),
            ("start_timeout", start_timeout),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0")
        if max_cached < 0 or max_cached_invalid < 0:
            raise ValueError("max_cached and max_cached_invalid must be >= 0")
        if max_inflight < 1 or max_response_bytes < 1:
            raise ValueError("max_inflight and max_response_bytes must be >= 1")
        self._max_inflight = max_inflight
        self.issuer = issuer
        self.audiences = _audiences(audience)
        self._endpoint = introspection_endpoint
        self._discovered_endpoint: str | None = None
        self._client_id = client_id
        self._client_secret = client_secret
        self._client_auth = client_auth
        self._require_audience = require_audience
        self._cache_ttl = cache_ttl
        self._negative_ttl = negative_ttl
        self._leeway = leeway
        self._http_timeout = http_timeout
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._runner = ClientRunner(
            "IntrospectionVerifier", http_timeout=http_timeout, start_timeout=start_timeout
        )
        self._active = _Cache(max_cached)
        self._inactive = _Cache(max_cached_invalid)
        self._lookups: dict[bytes, _Lookup] = {}
        self._outcomes = VerifyOutcomes()
        self._requests = self._failures = self._hits = self._misses = 0
        self._refused_busy = 0

    def __repr__(self) -> str:
        return (
            f"IntrospectionVerifier(issuer={self.issuer!r}, audience={self.audiences!r}, "
            f"client_id={self._client_id!r})"
        )

    def statistics(self) -> IntrospectionVerifierStatistics:
        """Counters and the cache's sizes, as a frozen record."""
        return IntrospectionVerifierStatistics(
            verified=self._outcomes.verified,
            invalid=self._outcomes.invalid,
            unavailable=self._outcomes.unavailable,
            introspections=self._requests,
            introspection_failures=self._failures,
            cache_hits=self._hits,
            cache_misses=self._misses,
            refused_busy=self._refused_busy,
            inflight=len(self._lookups),
            cached_active=len(self._active),
            cached_inactive=len(self._inactive),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the HTTP client, call ``task_status.started()``, serve until cancelled."""
        await self._runner.run(task_status)

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token, or :exc:`InvalidToken` / :exc:`VerifierUnavailable`."""
        return await self._outcomes.run(self._verify, token)

    async def _verify(self, token: str) -> VerifiedToken:
        if not looks_like_bearer_token(token, MAX_TOKEN_LENGTH):
            raise InvalidToken("the access token is malformed")
        _, nursery = await self._runner.ready()
        key = hashlib.sha256(token.encode("ascii")).digest()
        now = trio.current_time()
        cached = self._active.get(key, now) or self._inactive.get(key, now)
        if cached is None:
            self._misses += 1
            lookup = self._lookups.get(key)
            if lookup is None:
                if len(self._lookups) >= self._max_inflight:
                    self._refused_busy += 1
                    raise VerifierUnavailable("too many introspections in flight", retry_after=1.0)
                lookup = self._lookups[key] = _Lookup()
                nursery.start_soon(self._introspect, token, key, lookup)
            with trio.move_on_after(self._http_timeout * 2 + 1):
                await lookup.done.wait()
            if not lookup.done.is_set():
                raise VerifierUnavailable("the introspection did not finish in time")
            cached = lookup.result
            if cached is None:
                raise VerifierUnavailable(lookup.failure)
        else:
            self._hits += 1
        if isinstance(cached, InvalidToken):
            raise InvalidToken(cached.reason)
        verified: VerifiedToken = cached
        if verified.expires_at is not None and self._clock() >= verified.expires_at + self._leeway:
            raise InvalidToken("the token has expired")
        return verified

    async def _introspect(self, token: str, key: bytes, lookup: _Lookup) -> None:
        try:
            client, _ = await self._runner.ready()
            result: VerifiedToken | InvalidToken
            answer = await self._ask(client, token)
            try:
                result = check_introspection(
                    answer,
                    issuer=self.issuer,
                    audiences=self.audiences,
                    now=self._clock(),
                    leeway=self._leeway,
                    require_audience=self._require_audience,
                )
            except InvalidToken as exc:
                result = exc
        except (FetchError, MetadataError, VerifierUnavailable) as exc:
            reason = exc.reason if isinstance(exc, FetchError | VerifierUnavailable) else str(exc)
            lookup.failure = f"the introspection endpoint is unavailable: {reason}"
            self._failures += 1
            self._discovered_endpoint = None  # discover again next time
            logger.warning("%s", lookup.failure)
        else:
            lookup.result = result
            self._remember(key, result)
        finally:
            del self._lookups[key]
            lookup.done.set()

    def _remember(self, key: bytes, result: VerifiedToken | InvalidToken) -> None:
        now = trio.current_time()
        if isinstance(result, InvalidToken):
            self._inactive.put(key, result, now + self._negative_ttl)
            return
        ttl = self._cache_ttl
        if result.expires_at is not None:
            ttl = min(ttl, result.expires_at - self._clock())
        if ttl > 0:
            self._active.put(key, result, now + ttl)

    async def _ask(self, client: httpx.AsyncClient, token: str) -> Any:
        endpoint = self._endpoint or self._discovered_endpoint
        if endpoint is None:
            metadata = await discover_metadata(
                client, self.issuer, timeout=self._http_timeout, max_bytes=self._max_bytes
            )
            if metadata.introspection_endpoint is None:
                raise MetadataError("the issuer's metadata has no introspection_endpoint")
            endpoint = self._discovered_endpoint = metadata.introspection_endpoint
        form = {"token": token, "token_type_hint": "access_token"}
        headers: dict[str, str] = {}
        if self._client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding.
            pair = f"{_form(self._client_id)}:{_form(self._client_secret)}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": self._client_id, "client_secret": self._client_secret}
        self._requests += 1
        try:
            return await request_json(
                client,
                "POST",
                endpoint,
                timeout=self._http_timeout,
                max_bytes=self._max_bytes,
                data=form,
                headers=headers,
            )
        except FetchError as exc:
            if exc.status == 400 and exc.error in _TOKEN_ERRORS:
                return {"active": False}
            raise


def _form(value: str) -> str:
    return urllib.parse.quote(value, safe="")
