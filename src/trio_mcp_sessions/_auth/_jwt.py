"""JWT access tokens (RFC 9068) checked with the issuer's published keys.

What happens to a token, in order:

1. Sans-IO reading (:func:`read_token`): the compact form, a JSON header with
   an allowed asymmetric ``alg``, the ``typ``, and the unverified ``iss``. A
   token that fails here costs no I/O, so garbage cannot make us fetch.
2. The key: from the cached key set by ``kid``. An unknown ``kid`` refetches
   the issuer's JWKS at most once per ``refetch_interval``, single-flight.
3. The signature, by joserfc, with that one key and the allowlist.
4. The claims (:func:`check_claims`): ``iss`` exact, ``aud`` has this
   resource, ``exp`` required, ``nbf``/``iat`` not in the future.

Fetches run in the verifier's own nursery (see :meth:`JwtVerifier.run`);
requests wait for them on a :class:`trio.Event` within a deadline.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ._challenge import MAX_TOKEN_LENGTH, looks_like_bearer_token
from ._http import (
    ClientRunner,
    FetchError,
    import_httpx,
    request_json,
)
from ._metadata import MetadataError, check_http_url, discover_metadata, metadata_urls
from ._outcomes import VerifyOutcomes
from ._types import InvalidToken, VerifiedToken, VerifierUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    import httpx
    from joserfc.jwk import Key

__all__ = [
    "DEFAULT_ALGORITHMS",
    "JwtVerifier",
    "JwtVerifierStatistics",
    "TokenHeader",
    "check_claims",
    "parse_key_set",
    "read_token",
    "verify_signed",
]

logger = logging.getLogger("trio_mcp_sessions.auth")

#: Asymmetric signature algorithms only: a symmetric one would let anyone who
#: holds the (public) key set sign, and ``none`` needs no key at all.
DEFAULT_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "Ed25519",
)
#: Media types of an RFC 9068 access token, compared case-insensitively (RFC 7515 §4.1.9).
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
#: What ``require_typ=False`` accepts besides: ASes that send a plain JWT (or nothing).
_PLAIN_TYPES = frozenset({"jwt", "application/jwt"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _joserfc() -> Any:
    try:
        import joserfc.jwt
    except ImportError as exc:  # pragma: no cover - the test extra has it
        raise ImportError(
            "JwtVerifier needs joserfc: pip install 'trio-mcp-sessions[auth]'"
        ) from exc
    return joserfc


def _check_algorithms(algorithms: Collection[str]) -> tuple[str, ...]:
    from joserfc.jws import JWSRegistry

    chosen = tuple(dict.fromkeys(algorithms))
    if not chosen:
        raise ValueError("algorithms must name at least one algorithm")
    for name in chosen:
        if name == "EdDSA":
            raise ValueError("EdDSA is deprecated: allow 'Ed25519' instead")
        model = JWSRegistry.algorithms.get(name)
        if model is None:
            raise ValueError(f"unknown signature algorithm {name!r}")
        if model.key_type == "oct" or name == "none":
            raise ValueError(f"{name!r} is not an asymmetric signature algorithm")
    return chosen


def _audiences(audience: str | Collection[str]) -> tuple[str, ...]:
    values = (audience,) if isinstance(audience, str) else tuple(audience)
    if not values or not all(isinstance(a, str) and a for a in values):
        raise ValueError("audience must be a non-empty string or a collection of them")
    return values


# -- sans-IO: the token --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenHeader:
    """The parts of a JWT header the verifier acts on (read before the signature)."""

    alg: str
    kid: str | None
    typ: str | None


def _b64_json(segment: str) -> object:
    from joserfc.util import urlsafe_b64decode

    try:
        return json.loads(urlsafe_b64decode(segment.encode("ascii")))
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidToken("the access token is not a well-formed JWT") from None


def read_token(
    token: str, *, algorithms: Collection[str], require_typ: bool, issuer: str
) -> TokenHeader:
    """Check what can be checked without a key; the header if the token may be ours.

    Raises:
        InvalidToken: With a fixed phrase, never anything from the token.
    """
    if not looks_like_bearer_token(token, MAX_TOKEN_LENGTH):
        raise InvalidToken("the access token is not a well-formed JWT")
    parts = token.split(".")
    if len(parts) != 3 or not all(_B64URL.fullmatch(p) for p in parts):
        raise InvalidToken("the access token is not a signed JWT")
    header = _b64_json(parts[0])
    if not isinstance(header, dict):
        raise InvalidToken("the access token is not a well-formed JWT")
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("the token's signature algorithm is not allowed")
    if (kid is not None and not isinstance(kid, str)) or (
        typ is not None and not isinstance(typ, str)
    ):
        raise InvalidToken("the access token is not a well-formed JWT")
    if "crit" in header or "b64" in header:
        raise InvalidToken("the token's header has extensions this server does not support")
    kind = None if typ is None else typ.lower()
    if kind not in _ACCESS_TOKEN_TYPES and (require_typ or kind not in (None, *_PLAIN_TYPES)):
        raise InvalidToken("the token is not a JWT access token (typ)")
    claims = _b64_json(parts[1])
    if not isinstance(claims, dict):
        raise InvalidToken("the access token is not a well-formed JWT")
    if claims.get("iss") != issuer:
        raise InvalidToken("the token was issued by another issuer")
    return TokenHeader(alg, kid, typ)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def check_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    audiences: Sequence[str],
    now: float,
    leeway: float,
    require_audience: bool = True,
    require_exp: bool = True,
) -> VerifiedToken:
    """The verified token of signature-checked *claims*, or :exc:`InvalidToken`.

    Shared with introspection, whose answers carry the same claim names (and
    may leave out ``aud`` and ``exp``: *require_audience*, *require_exp*).
    """
    if claims.get("iss", issuer) != issuer:
        raise InvalidToken("the token was issued by another issuer")
    aud = claims.get("aud")
    granted = (aud,) if isinstance(aud, str) else ([] if aud is None else aud)
    if not isinstance(granted, list | tuple) or not all(isinstance(a, str) for a in granted):
        raise InvalidToken("the token's audience is malformed")
    if granted or require_audience:
        if not granted:
            raise InvalidToken("the token names no audience")
        if not any(a in granted for a in audiences):
            raise InvalidToken("the token was not issued for this resource")
    exp = _number(claims.get("exp"))
    if exp is None and (require_exp or "exp" in claims):
        raise InvalidToken("the token has no valid expiry")
    if exp is not None and now >= exp + leeway:
        raise InvalidToken("the token has expired")
    for name, phrase in (("nbf", "is not valid yet"), ("iat", "was issued in the future")):
        if name in claims:
            at = _number(claims[name])
            if at is None:
                raise InvalidToken(f"the token's {name} is not a number")
            if at > now + leeway:
                raise InvalidToken(f"the token {phrase}")
    subject, jti = claims.get("sub"), claims.get("jti")
    client_id = claims.get("client_id", claims.get("azp"))
    for value in (subject, jti, client_id):
        if value is not None and not isinstance(value, str):
            raise InvalidToken("the token's claims are malformed")
    return VerifiedToken(
        issuer=issuer,
        subject=subject,
        client_id=client_id,
        scopes=_scopes(claims),
        audience=tuple(granted),
        expires_at=exp,
        token_id=jti,
        claims=dict(claims),
    )


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` (RFC 9068, space-separated) or ``scp`` (a list, or a string as Entra sends)."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return frozenset(value)
        raise InvalidToken("the token's scopes are malformed")
    return frozenset()


# -- sans-IO: the key set ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _KeySet:
    by_kid: Mapping[str, tuple[Key, ...]]
    without_kid: tuple[Key, ...]

    def __len__(self) -> int:
        return sum(len(k) for k in self.by_kid.values()) + len(self.without_kid)

    def knows(self, kid: str | None) -> bool:
        return kid is None or kid in self.by_kid

    def key_for(self, header: TokenHeader) -> Key:
        """The one key that may have signed a token with *header* (whose kid is known)."""
        from joserfc.jws import JWSRegistry

        key_type = JWSRegistry.algorithms[header.alg].key_type
        pool = (
            self.by_kid.get(header.kid, ())
            if header.kid is not None
            else (*self.without_kid, *(k for ks in self.by_kid.values() for k in ks))
        )
        fits = [k for k in pool if k.key_type == key_type and k.get("alg") in (None, header.alg)]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            raise InvalidToken("no key of the issuer fits the token's algorithm")
        raise InvalidToken("the token names no key id and the issuer has several keys")


def parse_key_set(document: object, *, max_keys: int) -> _KeySet:
    """The usable signature keys of a JWKS document.

    Keys for encryption, symmetric keys and keys joserfc cannot read are left
    out (RFC 7517 §5 says to ignore what is not understood); a set with more
    than *max_keys* entries or without one usable key is refused.

    Raises:
        MetadataError: Not a key set, too many keys, or no usable key.
    """
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry

    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise MetadataError("the JWKS is not a key set")
    entries: list[Any] = document["keys"]
    if len(entries) > max_keys:
        raise MetadataError(f"the JWKS has more than {max_keys} keys")
    by_kid: dict[str, list[Key]] = {}
    without_kid: list[Key] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            key = JWKRegistry.import_key(public)
        except (JoseError, ValueError, TypeError, KeyError):
            continue
        if kid is None:
            without_kid.append(key)
        else:
            by_kid.setdefault(kid, []).append(key)
    if not by_kid and not without_kid:
        raise MetadataError("the JWKS has no usable signature key")
    return _KeySet({k: tuple(v) for k, v in by_kid.items()}, tuple(without_kid))


def _registry(algorithms: tuple[str, ...]) -> Any:
    from joserfc.jws import JWSRegistry

    registry = _REGISTRIES.get(algorithms)
    if registry is None:
        registry = JWSRegistry(algorithms=list(algorithms), strict_check_header=False)
        registry.max_header_length = 2048  # room for an x5c chain; joserfc's 512 is tight
        _REGISTRIES[algorithms] = registry
    return registry


_REGISTRIES: dict[tuple[str, ...], Any] = {}


def verify_signed(
    token: str,
    header: TokenHeader,
    keys: _KeySet,
    *,
    issuer: str,
    audiences: Sequence[str],
    algorithms: tuple[str, ...],
    now: float,
    leeway: float,
) -> VerifiedToken:
    """Check a :func:`read_token`-checked token's signature (joserfc) and claims (sans-IO).

    Raises:
        InvalidToken: With a fixed phrase, never anything from the token.
    """
    from joserfc import jwt
    from joserfc.errors import JoseError

    key = keys.key_for(header)
    try:
        decoded = jwt.decode(token, key, registry=_registry(algorithms))
    except (JoseError, ValueError, TypeError, KeyError):
        # Pure computation on the token: no checkpoint, nothing to cancel.
        raise InvalidToken("the token's signature is not valid") from None
    return check_claims(decoded.claims, issuer=issuer, audiences=audiences, now=now, leeway=leeway)


# -- the verifier --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JwtVerifierStatistics:
    """What a :class:`JwtVerifier` has done (counters since it was made).

    Attributes:
        verified: Tokens accepted.
        invalid: Tokens refused (``InvalidToken``).
        unavailable: Verifications that could not finish (``VerifierUnavailable``).
        jwks_fetches: Key set downloads started (metadata discovery included).
        jwks_fetch_failures: Of those, how many failed.
        refetches_suppressed: Unknown key ids refused without a fetch
            (within ``refetch_interval`` of the last one).
        cached_keys: Keys in the cached key set.
    """

    verified: int
    invalid: int
    unavailable: int
    jwks_fetches: int
    jwks_fetch_failures: int
    refetches_suppressed: int
    cached_keys: int


class _Fetch:
    """One key set download that every waiting verification shares."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = "the verifier stopped during a key set fetch"


class JwtVerifier:
    """Verifies RFC 9068 JWT access tokens with the issuer's JWKS.

    Start :meth:`run` in a nursery (``StreamableHTTPApp`` does it for a
    configured resource server); :meth:`verify` waits up to *start_timeout*
    for it, then answers :exc:`VerifierUnavailable` (a 503, not a 500).

    Args:
        issuer: The authorization server's issuer identifier, exactly as in its tokens.
        audience: This resource's identifier (the RFC 8707 ``resource`` clients
            ask for, usually the MCP endpoint URL), or several.
        algorithms: The signature algorithms to accept; asymmetric only
            (``HS*``, ``none`` and the deprecated ``EdDSA`` are refused).
        jwks_uri: The key set's URL; ``None`` discovers it from the issuer's
            metadata (RFC 8414, then OpenID Connect), whose ``issuer`` must match.
        leeway: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
        require_typ: Accept only ``typ: at+jwt``; ``False`` also accepts
            ``JWT`` or no ``typ`` (Keycloak, Entra), ``aud`` still keeps ID tokens out.
        refetch_interval: Least seconds between two key set fetches caused by
            an unknown ``kid``.
        jwks_max_age: After this many seconds a verification refreshes the
            key set in the background (so removed keys stop working); the old
            set stays in use if that fails.
        http_timeout: Deadline in seconds of every request to the issuer.
        max_keys: Largest key set accepted.
        max_response_bytes: Largest metadata or JWKS document read.
        start_timeout: How long :meth:`verify` waits for :meth:`run` to start.
        clock: Wall-clock time in POSIX seconds (for ``exp``); intervals use trio's clock.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Collection[str],
        *,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        jwks_uri: str | None = None,
        leeway: float = 60.0,
        require_typ: bool = True,
        refetch_interval: float = 30.0,
        jwks_max_age: float = 300.0,
        http_timeout: float = 5.0,
        max_keys: int = 100,
        max_response_bytes: int = 256 * 1024,
        start_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _joserfc()
        import_httpx()
        metadata_urls(issuer)  # checks the issuer's form
        if jwks_uri is not None:
            check_http_url(jwks_uri, "jwks_uri")
        for name, value in (
            ("leeway", leeway),
            ("refetch_interval", refetch_interval),
            ("jwks_max_age", jwks_max_age),
            ("http_timeout", http_timeout),
            ("start_timeout", start_timeout),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0")
        if max_keys < 1 or max_response_bytes < 1:
            raise ValueError("max_keys and max_response_bytes must be >= 1")
        self.issuer = issuer
        self.audiences = _audiences(audience)
        self.algorithms = _check_algorithms(algorithms)
        self._jwks_uri = jwks_uri
        self._discovered_jwks_uri: str | None = None
        self._leeway = leeway
        self._require_typ = require_typ
        self._refetch_interval = refetch_interval
        self._max_age = jwks_max_age
        self._http_timeout = http_timeout
        self._max_keys = max_keys
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._runner = ClientRunner(
            "JwtVerifier", http_timeout=http_timeout, start_timeout=start_timeout
        )
        self._keys: _KeySet | None = None
        self._fetched_at = -math.inf  # trio time of the last successful fetch
        self._refetched_at = -math.inf  # trio time of the last fetch for an unknown kid
        self._failed_until = -math.inf
        self._failure = ""
        self._fetch: _Fetch | None = None
        self._outcomes = VerifyOutcomes()
        self._fetches = self._fetch_failures = self._suppressed = 0

    def __repr__(self) -> str:
        return f"JwtVerifier(issuer={self.issuer!r}, audience={self.audiences!r})"

    def statistics(self) -> JwtVerifierStatistics:
        """Counters and the cached key set's size, as a frozen record."""
        return JwtVerifierStatistics(
            verified=self._outcomes.verified,
            invalid=self._outcomes.invalid,
            unavailable=self._outcomes.unavailable,
            jwks_fetches=self._fetches,
            jwks_fetch_failures=self._fetch_failures,
            refetches_suppressed=self._suppressed,
            cached_keys=0 if self._keys is None else len(self._keys),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the HTTP client, call ``task_status.started()``, serve until cancelled.

        The key set is fetched by the first verification, not here, so a
        server starts while its authorization server is down (and answers
        503 until it is back).
        """
        await self._runner.run(task_status)

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token, or :exc:`InvalidToken` / :exc:`VerifierUnavailable`."""
        return await self._outcomes.run(self._verify, token)

    async def _verify(self, token: str) -> VerifiedToken:
        header = read_token(
            token, algorithms=self.algorithms, require_typ=self._require_typ, issuer=self.issuer
        )
        _, nursery = await self._runner.ready()
        keys = await self._key_set(header.kid, nursery)
        return verify_signed(
            token,
            header,
            keys,
            issuer=self.issuer,
            audiences=self.audiences,
            algorithms=self.algorithms,
            now=self._clock(),
            leeway=self._leeway,
        )

    async def _key_set(self, kid: str | None, nursery: trio.Nursery) -> _KeySet:
        """The cached key set, fetched first if it is missing or does not know *kid*."""
        now = trio.current_time()
        keys = self._keys
        if keys is not None and keys.knows(kid):
            if now - self._fetched_at >= self._max_age and now >= self._failed_until:
                self._start_fetch(nursery)  # in the background; this token uses the old set
            return keys
        if (
            keys is not None
            and self._fetch is None
            and now - self._refetched_at < self._refetch_interval
        ):
            if now < self._failed_until:
                raise VerifierUnavailable(self._failure, retry_after=self._failed_until - now)
            self._suppressed += 1
            raise InvalidToken("the token's key id is not one of the issuer's keys")
        if self._fetch is None and now < self._failed_until:
            raise VerifierUnavailable(self._failure, retry_after=self._failed_until - now)
        if keys is not None and self._fetch is None:
            # Only these count against the interval: the first load and the
            # max-age refreshes must not hold a rotated key out for its length.
            self._refetched_at = now
        fetch = self._fetch or self._start_fetch(nursery)
        with trio.move_on_after(self._http_timeout * 4 + 1):
            await fetch.done.wait()
        if not fetch.done.is_set():
            raise VerifierUnavailable("the issuer's key set fetch did not finish in time")
        if fetch.error is not None:
            raise VerifierUnavailable(fetch.error, retry_after=self._backoff())
        keys = self._keys
        assert keys is not None
        if not keys.knows(kid):
            raise InvalidToken("the token's key id is not one of the issuer's keys")
        return keys

    def _backoff(self) -> float:
        return max(1.0, min(self._refetch_interval, 5.0))

    def _start_fetch(self, nursery: trio.Nursery) -> _Fetch:
        if self._fetch is not None:
            return self._fetch
        fetch = self._fetch = _Fetch()
        self._fetches += 1
        nursery.start_soon(self._download, fetch)
        return fetch

    async def _download(self, fetch: _Fetch) -> None:
        try:
            client, _ = await self._runner.ready()
            keys = await self._load_keys(client)
        except (FetchError, MetadataError, VerifierUnavailable) as exc:
            reason = exc.reason if isinstance(exc, FetchError | VerifierUnavailable) else str(exc)
            fetch.error = f"the issuer's keys are unavailable: {reason}"
            self._fetch_failures += 1
            self._failure = fetch.error
            self._failed_until = trio.current_time() + self._backoff()
            self._discovered_jwks_uri = None  # discover again next time
            logger.warning("%s", fetch.error)
        else:
            fetch.error = None
            self._keys = keys
            self._fetched_at = trio.current_time()
            logger.info("fetched %d signing keys of %s", len(keys), self.issuer)
        finally:
            self._fetch = None
            fetch.done.set()

    async def _load_keys(self, client: httpx.AsyncClient) -> _KeySet:
        uri = self._jwks_uri or self._discovered_jwks_uri
        if uri is None:
            metadata = await discover_metadata(
                client, self.issuer, timeout=self._http_timeout, max_bytes=self._max_bytes
            )
            if metadata.jwks_uri is None:
                raise MetadataError("the issuer's metadata has no jwks_uri")
            uri = self._discovered_jwks_uri = metadata.jwks_uri
        document = await request_json(
            client, "GET", uri, timeout=self._http_timeout, max_bytes=self._max_bytes
        )
        return parse_key_set(document, max_keys=self._max_keys)
