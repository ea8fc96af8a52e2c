"""Every bound, validated once: SessionLimits, EvictionPolicy, CallLimits and KeyedLimit.

Plain data (no trio): the table, admission and the coordinator read these
values; invalid ones are refused here, when the limits are built.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from .._ratelimit import RateLimit
from .._streams import WRITE_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._interface import RequestInfo

__all__ = [
    "DISCOVER_LIMIT",
    "CallLimits",
    "EvictionPolicy",
    "KeyedLimit",
    "SessionLimits",
    "positive_seconds",
]


class EvictionPolicy(enum.Enum):
    """What happens when ``initialize`` arrives and the session cap is reached."""

    LEAST_RECENTLY_ACTIVE = "least_recently_active"
    """Evict the least recently active session that has no request in flight and
    no open stream; refuse (503) when every session is busy. The default: an
    evicted client was idle, so it loses nothing in flight."""
    OLDEST = "oldest"
    """Evict the session created first, busy or not (the seed crate's FIFO);
    its in-flight handlers are cancelled and its streams end."""
    REJECT = "reject"
    """Never evict; refuse (503 with ``Retry-After``)."""


def _client_address(info: RequestInfo) -> str | None:
    """The default client key: the verified caller ``(iss, sub)``, else the peer address."""
    token = info.token
    return token.rate_limit_key if token is not None else info.client_address


def positive_seconds(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds")
    if not value > 0 or math.isnan(value):
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Every bound on sessions, in one place. Invalid values are refused here.

    The defaults keep a default server from being wedged: the cap is finite,
    idle sessions expire, and at the cap the least recently active idle
    session makes room, so clients that never send DELETE cannot fill the
    server for good.

    Attributes:
        max_sessions: Live sessions at most, exactly (default 10,000).
        eviction: What to do at the cap (:class:`EvictionPolicy`).
        idle_timeout: Seconds without activity before a session ends; the
            clock stops while a request is in flight or a stream is open.
        init_timeout: Seconds a new session has to be used after
            ``initialize`` (``initialized``, a request or a stream).
        max_lifetime: Seconds after which a session ends whatever it is doing
            (``None``: no limit).
        rate_limit: A :class:`RateLimit` on session creation shared by all
            clients (``None``: none).
        rate_limit_per_client: A :class:`RateLimit` applied to each client key.
        rate_limit_key: ``fn(RequestInfo) -> str | None``: the client key; the
            default is the peer address. Return the authenticated principal to
            limit per user instead. ``None`` exempts the request from the
            per-client limit.
        eviction_wait: Seconds a creation waits for its victim to finish closing
            before it gives up with 503.
        max_inflight_per_session: Requests one session may have running at
            once; a request (or batch) over it is refused with
            :exc:`TooManyInFlight` (HTTP 429) before anything of it starts.
        write_timeout: Seconds an HTTP response may take nothing from its full
            buffer (a reader that stopped reading) before it is dropped; its
            client resumes from the event store.
    """

    max_sessions: int = 10_000
    eviction: EvictionPolicy = EvictionPolicy.LEAST_RECENTLY_ACTIVE
    idle_timeout: float = 600.0
    init_timeout: float = 60.0
    max_lifetime: float | None = None
    rate_limit: RateLimit | None = None
    rate_limit_per_client: RateLimit | None = None
    rate_limit_key: Callable[[RequestInfo], str | None] = _client_address
    eviction_wait: float = 5.0
    max_inflight_per_session: int = 100
    write_timeout: float = WRITE_TIMEOUT

    def __post_init__(self) -> None:
        if isinstance(self.max_sessions, bool) or not isinstance(self.max_sessions, int):
            raise TypeError("max_sessions must be an int")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if isinstance(self.eviction, str):
            try:
                object.__setattr__(self, "eviction", EvictionPolicy(self.eviction))
            except ValueError:
                names = ", ".join(p.value for p in EvictionPolicy)
                raise ValueError(
                    f"eviction must be one of {names}, not {self.eviction!r}"
                ) from None
        if not isinstance(self.eviction, EvictionPolicy):
            raise TypeError("eviction must be an EvictionPolicy")
        positive_seconds("idle_timeout", self.idle_timeout)
        positive_seconds("init_timeout", self.init_timeout)
        positive_seconds("max_lifetime", self.max_lifetime, optional=True)
        positive_seconds("eviction_wait", self.eviction_wait)
        positive_seconds("write_timeout", self.write_timeout)
        if isinstance(self.max_inflight_per_session, bool) or not isinstance(
            self.max_inflight_per_session, int
        ):
            raise TypeError("max_inflight_per_session must be an int")
        if self.max_inflight_per_session < 1:
            raise ValueError(
                f"max_inflight_per_session must be at least 1, got {self.max_inflight_per_session}"
            )
        for name in ("rate_limit", "rate_limit_per_client"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, RateLimit):
                raise TypeError(
                    f"{name} must be a RateLimit(max_creations, window) or None, not {value!r}"
                )


@dataclass(frozen=True, slots=True)
class KeyedLimit:
    """The budget of one method or one tool: all clients together, and each client key.

    Attributes:
        total: A :class:`RateLimit` shared by every client (``None``: none).
        per_client: A :class:`RateLimit` applied to each client key separately.

    Raises:
        ValueError: When neither is given (leave the name out instead).
    """

    total: RateLimit | None = None
    per_client: RateLimit | None = None

    def __post_init__(self) -> None:
        for name in ("total", "per_client"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, RateLimit):
                raise TypeError(
                    f"{name} must be a RateLimit(max_calls, window) or None, not {value!r}"
                )
        if self.total is None and self.per_client is None:
            raise ValueError("a KeyedLimit needs total, per_client or both")


#: ``server/discover``'s own budget by default: generous (a client probes once
#: per origin and caches the answer), yet one client cannot make a server
#: answer probes without end.
DISCOVER_LIMIT: Final = KeyedLimit(per_client=RateLimit(100, 1.0))

_DISCOVER = "server/discover"


@final
class _NamedLimits(Mapping[str, KeyedLimit]):
    """A read-only, hashable ``{name: KeyedLimit}``: the limits stay plain, frozen data."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, KeyedLimit]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> KeyedLimit:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


def _named_limits(name: str, value: object) -> Mapping[str, KeyedLimit]:
    """A read-only copy of a ``{method or tool name: KeyedLimit}`` mapping, checked."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of names to KeyedLimit, not {value!r}")
    checked: dict[str, KeyedLimit] = {}
    for key, limit in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name} keys must be non-empty names, not {key!r}")
        if not isinstance(limit, KeyedLimit):
            raise TypeError(f"{name}[{key!r}] must be a KeyedLimit, not {limit!r}")
        checked[key] = limit
    return _NamedLimits(checked)


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Bounds on requests: in flight (both eras) and call rates (2026-07-28).

    Invalid values are refused here. The in-flight caps hold for every POST
    (both eras); the rate limits for 2026-07-28 requests, which no session
    holds.

    Every budget is a sliding window per :class:`RateLimit`, keyed by the same
    client key. A request spends one from each budget that applies to it, or
    from none: the call budget (*rate_limit*, *rate_limit_per_client*), its
    method's (*method_limits*) and, for ``tools/call``, its tool's
    (*tool_limits*; the name is read from the body once the ``Mcp-Name``
    header was checked against it). ``server/discover`` spends only from
    *discover_limit*: a refused probe sends a dual-era client back to the
    handshake, so the call budget never throttles it.

    Attributes:
        rate_limit: A :class:`RateLimit` on sessionless requests from all
            clients together (``None``: none).
        rate_limit_per_client: A :class:`RateLimit` applied to each client key.
        rate_limit_key: ``fn(RequestInfo) -> str | None``: the client key (the
            peer address by default; the authenticated principal is better).
            Never the client's self-reported ``clientInfo``. ``None`` exempts
            the request from every per-client window and cap. It keys the
            per-client in-flight cap too.
        max_inflight: POSTs (of either era) running at once, exactly; a
            batch counts each request. The slot is taken before the body is
            read and given back when the response ends or the client leaves;
            over it the answer is 503 with ``Retry-After`` (:exc:`ServerBusy`).
            ``server/discover`` and ``subscriptions/listen`` (named so by
            ``Mcp-Method``, checked against the body) have bounds of their own.
        max_inflight_per_client: POSTs one client key may have running at
            once (429, :exc:`TooManyInFlight`); ``None``: no per-client cap
            (the default: behind a proxy every client has the same address;
            set it with a *rate_limit_key* that tells clients apart).
        inflight_queue_timeout: Seconds a request may wait in line for a
            global slot before it is refused (0: refused at once).
        max_inflight_queued: Requests that may wait in that line at once.
        max_inflight_discover: ``server/discover`` probes answered at once
            (their own pool, so a full call cap never refuses a probe).
        method_limits: ``{method: KeyedLimit}``, e.g. ``{"resources/read":
            KeyedLimit(per_client=RateLimit(50, 1))}``.
        tool_limits: ``{tool name: KeyedLimit}`` for ``tools/call``; only the
            names given here get windows, so a client cannot grow them by
            naming tools.
        discover_limit: ``server/discover``'s own budget (default 100 per
            second per client key; ``None``: unlimited).
    """

    rate_limit: RateLimit | None = None
    rate_limit_per_client: RateLimit | None = None
    rate_limit_key: Callable[[RequestInfo], str | None] = _client_address
    max_inflight: int = 512
    max_inflight_per_client: int | None = None
    inflight_queue_timeout: float = 0.0
    max_inflight_queued: int = 0
    max_inflight_discover: int = 64
    method_limits: Mapping[str, KeyedLimit] = field(default_factory=dict)
    tool_limits: Mapping[str, KeyedLimit] = field(default_factory=dict)
    discover_limit: KeyedLimit | None = DISCOVER_LIMIT

    def __post_init__(self) -> None:
        for name, minimum in (
            ("max_inflight", 1),
            ("max_inflight_per_client", 1),
            ("max_inflight_queued", 0),
            ("max_inflight_discover", 1),
        ):
            value = getattr(self, name)
            if value is None and name == "max_inflight_per_client":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {value}")
        queue = self.inflight_queue_timeout
        if isinstance(queue, bool) or not isinstance(queue, (int, float)):
            raise TypeError("inflight_queue_timeout must be a number of seconds")
        if not queue >= 0 or math.isinf(queue):
            raise ValueError(f"inflight_queue_timeout must be finite and >= 0, got {queue}")
        if queue > 0 and self.max_inflight_queued < 1:
            raise ValueError("inflight_queue_timeout needs max_inflight_queued of at least 1")
        for name in ("rate_limit", "rate_limit_per_client"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, RateLimit):
                raise TypeError(
                    f"{name} must be a RateLimit(max_calls, window) or None, not {value!r}"
                )
        if not callable(self.rate_limit_key):
            raise TypeError(f"rate_limit_key must be callable, not {self.rate_limit_key!r}")
        object.__setattr__(
            self, "method_limits", _named_limits("method_limits", self.method_limits)
        )
        object.__setattr__(self, "tool_limits", _named_limits("tool_limits", self.tool_limits))
        if _DISCOVER in self.method_limits:
            raise ValueError(
                f"{_DISCOVER} has a budget of its own: set discover_limit, not method_limits"
            )
        if self.discover_limit is not None and not isinstance(self.discover_limit, KeyedLimit):
            raise TypeError(
                f"discover_limit must be a KeyedLimit or None, not {self.discover_limit!r}"
            )
