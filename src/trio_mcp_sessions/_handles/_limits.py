"""The handle store's limits, statistics and handle strings, sans-IO.

Everything here is plain arithmetic and text: what a store may hold, how a
handle looks and is keyed, and the retention policy a creating tool states
in its description (``server/tools.mdx#stateful-tools``).
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "HandleLimits",
    "HandlePolicy",
    "HandleStatistics",
    "handle_key",
    "mint_handle",
    "retention_note",
]

#: Random bytes in a handle: 192 bits (the spec asks for "sufficient entropy"; we promise >= 128).
TOKEN_BYTES: Final = 24
#: ``secrets.token_urlsafe(TOKEN_BYTES)`` is this many characters long.
_TOKEN_CHARS: Final = 32
_PREFIX: Final = re.compile(r"[a-z][a-z0-9]{0,15}")


class HandlePolicy(enum.Enum):
    """What :meth:`HandleStore.create` does at a cap (global or per principal)."""

    LEAST_RECENTLY_USED = "least_recently_used"
    """Evict the handle used longest ago (of the principal, at its own cap). The
    default: what goes was idle the longest, so its owner probably moved on."""
    OLDEST = "oldest"
    """Evict the handle created first, used or not."""
    REJECT = "reject"
    """Never evict: the create fails with a tool execution error saying why."""


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None")
    if not value > 0 or math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be positive and finite (None: no limit), got {value}")


@final
@dataclass(frozen=True, slots=True)
class HandleLimits:
    """The bounds of one handle store.

    The worst case in memory is about ``max_handles * max_value_bytes`` (64 MiB
    with the defaults). Every instance sharing a persistent backend must use
    the same limits: the caps are enforced where the records are.

    Attributes:
        max_handles: Live handles in the store, all principals together.
        max_per_principal: Live handles of one authenticated principal.
            Requests without a principal share only the global cap (one
            "anonymous" budget would let any client exhaust everyone's).
        idle_timeout: Seconds without a get or update before a handle
            expires (``None``: never idle out).
        max_lifetime: Seconds after its creation at which a handle expires,
            used or not (``None``: no maximum).
        max_value_bytes: The largest value, as compact UTF-8 JSON.
        policy: What a create does at a cap.
        sweep_interval: Seconds between :meth:`HandleStore.run`'s sweeps of
            expired handles (a lookup or create also removes what it meets).
    """

    max_handles: int = 4096
    max_per_principal: int = 64
    idle_timeout: float | None = 3600.0
    max_lifetime: float | None = 86400.0
    max_value_bytes: int = 16 * 1024
    policy: HandlePolicy = HandlePolicy.LEAST_RECENTLY_USED
    sweep_interval: float = 60.0

    def __post_init__(self) -> None:
        _check_count("max_handles", self.max_handles)
        _check_count("max_per_principal", self.max_per_principal)
        _check_count("max_value_bytes", self.max_value_bytes)
        _check_seconds("idle_timeout", self.idle_timeout)
        _check_seconds("max_lifetime", self.max_lifetime)
        _check_seconds("sweep_interval", self.sweep_interval)
        if self.sweep_interval is None:
            raise TypeError("sweep_interval must be a number of seconds")
        if not isinstance(self.policy, HandlePolicy):
            raise TypeError("policy must be a HandlePolicy")

    @property
    def idle(self) -> float:
        """``idle_timeout`` with no limit as infinity."""
        return math.inf if self.idle_timeout is None else float(self.idle_timeout)

    @property
    def lifetime(self) -> float:
        """``max_lifetime`` with no limit as infinity."""
        return math.inf if self.max_lifetime is None else float(self.max_lifetime)

    def expired(self, now: float, created: float, used: float) -> bool:
        """Whether a handle created at *created*, last used at *used*, is gone at *now*."""
        return now - used >= self.idle or now - created >= self.lifetime

    def expires_at(self, created: float, used: float) -> float:
        """When a handle expires if nobody uses it again (infinity: never)."""
        return min(used + self.idle, created + self.lifetime)


@final
@dataclass(frozen=True, slots=True)
class HandleStatistics:
    """What :meth:`HandleStore.statistics` reports: counts since the store was made.

    Counters are this process's; ``handles`` is the live count the backend
    reported last (exact for the memory backend; for a shared one, as of
    this process's last create or sweep).

    Attributes:
        name: The store's name (a Prometheus label).
        handles: Live handles.
        max_handles, max_per_principal: The caps.
        created: Handles minted.
        deleted: Handles removed by a delete.
        expired: Handles removed because they idled out or reached their lifetime.
        evicted: Handles removed by the policy to make room at a cap.
        refused: Creates refused at a cap (``REJECT``), and values (created or updated) too large.
        not_found: Lookups answered "expired or unknown" (also a handle of another principal).
        store_errors: Backend calls that failed (the tool saw "unavailable").
    """

    name: str
    handles: int
    max_handles: int
    max_per_principal: int
    created: int
    deleted: int
    expired: int
    evicted: int
    refused: int
    not_found: int
    store_errors: int


def check_prefix(prefix: str) -> None:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix must be 1-16 lower-case letters and digits, starting with a letter: {prefix!r}"
        )


def mint_handle(prefix: str) -> str:
    """A new handle: ``<prefix>_`` and 192 random bits, URL-safe (opaque, unguessable)."""
    return f"{prefix}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def handle_key(prefix: str, handle: object) -> str | None:
    """The key a backend stores *handle* under, or ``None`` when it cannot be one of ours.

    Backends keep a digest, never the handle: a copied database or a
    ``KEYS *`` hands out no live bearer tokens.
    """
    if not isinstance(handle, str) or len(handle) != len(prefix) + 1 + _TOKEN_CHARS:
        return None
    head, sep, token = handle.partition("_")
    if head != prefix or not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        return None
    return hashlib.sha256(handle.encode()).hexdigest()


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def retention_note(noun: str, limits: HandleLimits) -> str:
    """The retention policy in words, for the creating tool's description."""
    parts = []
    if limits.idle_timeout is not None:
        parts.append(f"after {_duration(limits.idle_timeout)} without use")
    if limits.max_lifetime is not None:
        parts.append(f"{_duration(limits.max_lifetime)} after creation")
    expiry = (
        f"{noun.capitalize()}s expire {' or '.join(parts)}."
        if parts
        else f"{noun.capitalize()}s do not expire."
    )
    if limits.policy is HandlePolicy.REJECT:
        cap = f"At most {limits.max_per_principal} open per user; delete one to make room."
    else:
        which = (
            "least recently used" if limits.policy is HandlePolicy.LEAST_RECENTLY_USED else "oldest"
        )
        cap = f"At most {limits.max_per_principal} open per user; the {which} goes beyond that."
    return f"{expiry} {cap}"
