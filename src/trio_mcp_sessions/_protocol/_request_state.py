"""The MRTR ``requestState`` we mint for input-required rounds, sealed and opened. Sans-IO.

A 2026-07-28 handler that needs input answers ``InputRequiredResult`` with
a ``requestState`` the client echoes on its retry. The client is an attacker
as far as that string goes (``basic/patterns/mrtr.mdx``): its integrity is
protected by HMAC-SHA256, it is bound to the principal and the originating
request, it lapses after a TTL from its sealing and after ``max_pending``
from the first round (the origin time rides in every round's state), it is
bounded in size and in rounds, and, with :class:`UsedStates`, it opens once.
What the client answers (``inputResponses``) is bounded too
(:func:`json_size_over`, checked before anything else is done with it).
HMAC gives integrity, not secrecy: the client can read the state, so it
must not carry secrets.

A token is ``rs1.<payload>.<kid>.<mac>``: base64url (no padding) of compact,
sorted JSON; the id of the key that signed; the MAC over the three before it.
Every part is compared as the exact string we minted, so a changed bit in any
of them (base64's spare bits included) is refused. Nothing is decoded before
the MAC verifies, and nothing over ``max_bytes`` is even looked at.

Time is a plain float ``now`` passed in; no trio here. Tokens outlive the
process and cross instances, so ``now`` must be wall-clock seconds
(``time.time()``), not trio's per-process clock; ``skew`` allows for the
instances' clocks to differ.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from ._jsonrpc import INVALID_PARAMS, ProtocolError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._jsonrpc import RequestId

__all__ = [
    "InvalidRequestState",
    "OpenedRequestState",
    "PendingTooLong",
    "RequestStateBinding",
    "RequestStateCodec",
    "RequestStateReason",
    "RequestStateTooLarge",
    "TooManyRounds",
    "UsedStates",
    "UsedStatesStatistics",
    "json_size_over",
    "params_digest",
]

RequestStateReason: TypeAlias = Literal[
    "malformed",
    "tampered",
    "unknown_key",
    "expired",
    "wrong_binding",
    "too_large",
    "too_many_rounds",
    "pending_too_long",
    "replayed",
    "replay_cache_full",
]

_MESSAGES: Final[Mapping[RequestStateReason, str]] = {
    "malformed": "requestState is not one we issued",
    "tampered": "requestState failed verification",
    "unknown_key": "requestState was signed with a key this server does not hold",
    "expired": "requestState is outside its validity window; call again without it",
    "wrong_binding": "requestState belongs to another principal or request",
    "too_large": "requestState is larger than this server accepts",
    "too_many_rounds": "requestState has used up its input rounds",
    "pending_too_long": "the request has waited too long for input across its rounds; "
    "call it again without requestState to start over",
    "replayed": "requestState has already been used",
    "replay_cache_full": "too many requestStates in flight; call again without it",
}

_PREFIX: Final = "rs1"
_CONTEXT: Final = b"trio-mcp-sessions requestState rs1"
MIN_KEY_BYTES: Final = 32
#: Seconds one originating request may wait for input across all its rounds.
MAX_PENDING: Final = 900.0
#: Characters of JSON the ``inputResponses`` of one retry may carry.
MAX_INPUT_BYTES: Final = 256 * 1024
_MAX_NONCE: Final = 64


class InvalidRequestState(Exception):
    """A ``requestState`` we refuse; answer JSON-RPC -32602 (see :meth:`to_protocol_error`).

    ``reason`` is one of :data:`RequestStateReason`; ``message`` is safe to send and never
    echoes the token.
    """

    code: Final = INVALID_PARAMS

    def __init__(self, reason: RequestStateReason) -> None:
        self.reason: RequestStateReason = reason
        self.message = _MESSAGES[reason]
        super().__init__(self.message)

    def to_protocol_error(self, request_id: RequestId | None) -> ProtocolError:
        return ProtocolError(
            INVALID_PARAMS, self.message, request_id=request_id, data={"reason": self.reason}
        )


class RequestStateTooLarge(ValueError):
    """Server side: the sealed state would exceed ``max_bytes`` (carry less in it)."""

    reason: Final = "too_large"


class TooManyRounds(ValueError):
    """Server side: the handler asked for input more than ``max_rounds`` times."""

    reason: Final = "too_many_rounds"


class PendingTooLong(ValueError):
    """Server side: the request's first round is over ``max_pending`` ago; start it again."""

    reason: Final = "pending_too_long"


_SIZER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def json_size_over(value: Any, limit: int) -> bool:
    """Whether *value*'s compact JSON is longer than *limit* characters.

    Encodes piece by piece and stops once past *limit*, so a hostile value
    costs at most about *limit* characters of work, however large it is.
    """
    size = 0
    for chunk in _SIZER.iterencode(value):
        size += len(chunk)
        if size > limit:
            return True
    return False


def params_digest(params: Any) -> str:
    """A short digest of salient params (e.g. tool arguments), for :class:`RequestStateBinding`."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return _b64(hashlib.sha256(text.encode()).digest()[:16])


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStateBinding:
    """What a token is good for: it opens only on a request that matches every field.

    ``principal`` is the authenticated identity (``None`` without auth; never
    the self-reported ``clientInfo``); ``name`` the tool or prompt name, or the
    resource URI; ``params`` a :func:`params_digest` of salient parameters.
    """

    principal: str | None
    method: str
    name: str
    protocol_version: str | None = None
    params: str | None = None

    def digest(self) -> str:
        fields = [self.principal, self.method, self.name, self.protocol_version, self.params]
        return _b64(hashlib.sha256(json.dumps(fields).encode()).digest()[:16])


@dataclass(frozen=True, slots=True)
class OpenedRequestState:
    """A verified token: the handler's state and where the rounds stand."""

    payload: dict[str, Any]
    round: int
    nonce: str
    issued_at: float
    expires_at: float
    #: When round 1 was sealed: the start of the originating request's wait.
    origin: float


@dataclass(frozen=True, slots=True)
class UsedStatesStatistics:
    entries: int
    max_entries: int
    recorded: int
    replays_refused: int
    full_refused: int


class UsedStates:
    """The nonces of tokens already opened, held until those tokens expire. Sans-IO.

    When all ``max_entries`` slots hold unexpired nonces, a new token is
    *refused* (``replay_cache_full``) rather than a held nonce forgotten:
    forgetting would let that token open twice, while refusing costs the
    client one call made again from the start (it must be ready for that
    anyway: the server MUST NOT assume retries). Entries expire when their
    token does, so the table drains by itself within one TTL. An entry costs
    about 200 bytes: 10 MB at the default 50 000, room for 83 opens a second
    sustained with the default 600 s TTL.

    Replay protection is per instance: with several instances, a token can
    open once on each unless the used set is shared (the Redis store, later).
    """

    __slots__ = ("_expiry", "_full", "_heap", "_recorded", "_replays", "max_entries")

    def __init__(self, max_entries: int = 50_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._recorded = self._replays = self._full = 0

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._expiry

    def check_and_record(self, nonce: str, expires_at: float, now: float) -> bool:
        """Record *nonce* and return True on its first use; False if seen or no room."""
        while self._heap and self._heap[0][0] < now:
            del self._expiry[heapq.heappop(self._heap)[1]]
        if nonce in self._expiry:
            self._replays += 1
            return False
        if len(self._expiry) >= self.max_entries:
            self._full += 1
            return False
        self._expiry[nonce] = expires_at
        heapq.heappush(self._heap, (expires_at, nonce))
        self._recorded += 1
        return True

    def statistics(self) -> UsedStatesStatistics:
        return UsedStatesStatistics(
            len(self._expiry), self.max_entries, self._recorded, self._replays, self._full
        )


class RequestStateCodec:
    """Seals and opens ``requestState`` tokens with a key ring.

    The first key signs; every key verifies, so a key is rotated by putting
    the new one first and dropping the old one after ``ttl``. With
    ``keys=None`` a random key is made for this process: tokens then open
    only on the instance that minted them and not after a restart, so a
    multi-instance deployment MUST configure the same keys everywhere.

    Args:
        keys: Secret keys, at least 32 random bytes each.
        ttl: Seconds a token stays valid after it was sealed.
        max_bytes: Longest token sealed or opened.
        max_rounds: Most input-required rounds one originating request may take.
        skew: Seconds a token may appear issued in the future (clocks of
            instances differ).
        max_pending: Seconds one originating request may wait for input
            across all its rounds, from the sealing of round 1 (``ttl``
            counts from the last sealing only): without it, ``max_rounds``
            rounds of ``ttl`` each would keep a request open for 80 minutes.
        max_input_bytes: Longest ``inputResponses`` (characters of compact
            JSON) one retry may carry; checked before anything else.
    """

    def __init__(
        self,
        keys: Sequence[bytes] | None = None,
        *,
        ttl: float = 600.0,
        max_bytes: int = 16 * 1024,
        max_rounds: int = 8,
        skew: float = 30.0,
        max_pending: float = MAX_PENDING,
        max_input_bytes: int = MAX_INPUT_BYTES,
    ) -> None:
        if keys is None:
            keys = [secrets.token_bytes(32)]
        elif isinstance(keys, bytes | bytearray | str):
            raise TypeError("keys must be a sequence of keys: wrap a single key in a list")
        if not keys:
            raise ValueError("keys must hold at least one key (or be None for a per-process key)")
        self._ring: dict[str, bytes] = {}
        for i, key in enumerate(keys):
            if not isinstance(key, bytes | bytearray):
                raise TypeError(f"request-state key #{i} is {type(key).__name__}, not bytes")
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(
                    f"request-state key #{i} has {len(key)} bytes; at least {MIN_KEY_BYTES} "
                    "random bytes are needed (e.g. secrets.token_bytes(32))"
                )
            kid = _b64(hashlib.sha256(key).digest()[:8])
            if kid in self._ring:
                raise ValueError(f"request-state key #{i} repeats an earlier key")
            self._ring[kid] = hmac.new(bytes(key), _CONTEXT, hashlib.sha256).digest()
        self._signing_kid = next(iter(self._ring))
        if not (math.isfinite(ttl) and ttl > 0) or not (math.isfinite(skew) and skew >= 0):
            raise ValueError("ttl must be a positive number of seconds and skew not negative")
        if max_bytes < 256:
            raise ValueError(f"max_bytes must be at least 256, not {max_bytes}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, not {max_rounds}")
        if isinstance(max_pending, bool) or not (math.isfinite(max_pending) and max_pending > 0):
            raise ValueError(f"max_pending must be a positive number of seconds, not {max_pending}")
        if isinstance(max_input_bytes, bool) or max_input_bytes < 1:
            raise ValueError(f"max_input_bytes must be at least 1, not {max_input_bytes}")
        self.ttl, self.skew, self.max_bytes, self.max_rounds = ttl, skew, max_bytes, max_rounds
        self.max_pending, self.max_input_bytes = max_pending, max_input_bytes

    def seal(
        self,
        state: Mapping[str, Any],
        *,
        binding: RequestStateBinding,
        now: float,
        round: int,
        origin: float | None = None,
    ) -> str:
        """A token carrying *state* (JSON, str keys) for input-required round *round* (from 1).

        *origin* is :attr:`OpenedRequestState.origin` of the round this one
        follows (``None``: *now*, the first round).

        Raises:
            TooManyRounds: *round* is over ``max_rounds``.
            PendingTooLong: *origin* is over ``max_pending`` before *now*.
            RequestStateTooLarge: The token would be over ``max_bytes``.
        """
        _check_now(now)
        if isinstance(round, bool) or not isinstance(round, int) or round < 1:
            raise ValueError(f"round must be an int from 1, not {round!r}")
        if round > self.max_rounds:
            raise TooManyRounds(f"round {round} is over max_rounds={self.max_rounds}")
        origin = now if origin is None else origin
        _check_now(origin)
        if now - origin > self.max_pending:
            raise PendingTooLong(
                f"the request has waited {now - origin:.0f} s for input, over "
                f"max_pending={self.max_pending:g} s; call it again without requestState "
                "to start over"
            )
        envelope = {
            "b": binding.digest(),
            "i": float(now),
            "n": secrets.token_urlsafe(16),
            "o": float(min(origin, now)),
            "r": round,
            "s": dict(state),
        }
        text = json.dumps(envelope, sort_keys=True, separators=(",", ":"), allow_nan=False)
        signed = f"{_PREFIX}.{_b64(text.encode())}.{self._signing_kid}"
        token = f"{signed}.{self._mac(self._ring[self._signing_kid], signed)}"
        if len(token) > self.max_bytes:
            raise RequestStateTooLarge(
                f"sealed requestState is {len(token)} bytes, over max_bytes={self.max_bytes}"
            )
        return token

    def open(
        self,
        token: object,
        *,
        binding: RequestStateBinding,
        now: float,
        used: UsedStates | None = None,
    ) -> OpenedRequestState:
        """Verify a client's *token* (any JSON value) for this request, or raise
        :class:`InvalidRequestState`. With *used*, a token opens once."""
        _check_now(now)
        if not isinstance(token, str):
            raise InvalidRequestState("malformed")
        if len(token) > self.max_bytes:
            raise InvalidRequestState("too_large")
        parts = token.split(".")
        if not token.isascii() or len(parts) != 4 or parts[0] != _PREFIX:
            raise InvalidRequestState("malformed")
        key = self._ring.get(parts[2])
        if key is None:
            raise InvalidRequestState("unknown_key")
        signed = token.rpartition(".")[0]
        if not hmac.compare_digest(self._mac(key, signed).encode(), parts[3].encode()):
            raise InvalidRequestState("tampered")
        envelope = _decode(parts[1])
        if not hmac.compare_digest(envelope["b"].encode(), binding.digest().encode()):
            raise InvalidRequestState("wrong_binding")
        issued_at: float = envelope["i"]
        if now > issued_at + self.ttl or issued_at > now + self.skew:
            raise InvalidRequestState("expired")
        origin: float = envelope["o"]
        if now - origin > self.max_pending:
            raise InvalidRequestState("pending_too_long")
        if envelope["r"] > self.max_rounds:
            raise InvalidRequestState("too_many_rounds")
        # It opens until the first of its two deadlines; so long its nonce is kept.
        expires_at = min(issued_at + self.ttl, origin + self.max_pending)
        nonce: str = envelope["n"]
        if used is not None and not used.check_and_record(nonce, expires_at, now):
            raise InvalidRequestState("replayed" if nonce in used else "replay_cache_full")
        return OpenedRequestState(
            envelope["s"], envelope["r"], nonce, issued_at, expires_at, origin
        )

    @staticmethod
    def _mac(key: bytes, signed: str) -> str:
        return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(part: str) -> dict[str, Any]:
    """The envelope of a verified token, checked field by field (defence in depth)."""
    try:
        envelope = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise InvalidRequestState("malformed") from None
    if isinstance(envelope, dict) and "o" not in envelope and "i" in envelope:
        # Sealed before tokens carried their origin (a rolling upgrade): its
        # pending time counts from its own round, so it is not refused midway.
        envelope["o"] = envelope["i"]
    if not (
        isinstance(envelope, dict)
        and isinstance(envelope.get("b"), str)
        and envelope["b"].isascii()
        and type(envelope.get("i")) is float
        and math.isfinite(envelope["i"])
        and type(envelope.get("o")) is float
        and math.isfinite(envelope["o"])
        and envelope["o"] <= envelope["i"]
        and isinstance(envelope.get("n"), str)
        and 0 < len(envelope["n"]) <= _MAX_NONCE
        and type(envelope.get("r")) is int
        and envelope["r"] >= 1
        and isinstance(envelope.get("s"), dict)
    ):
        raise InvalidRequestState("malformed")
    return envelope


def _check_now(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, not {now!r}")
