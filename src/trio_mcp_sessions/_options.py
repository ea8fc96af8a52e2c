"""Every scalar setting of a server with its default, once: :class:`ServerOptions`.

Plain data (no trio), like Hypercorn's ``Config``: the transport, the
built-in session manager and the command line read their defaults from
here, so none of them spells a default out again. Live objects (the server,
a manager, stores, a rate limiter, hooks) are arguments of their own.

Import order: this module reads :mod:`._manager._limits`, and the manager's
coordinator reads this module, so the ``_manager`` package is imported
first (the package's ``__init__`` does that before anything reaches here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Final, get_args

from ._interface import ReplyMode
from ._manager._limits import CallLimits, SessionLimits, positive_seconds
from ._protocol._deadline import MAX_REQUEST_TIME, REQUEST_TIMEOUT, check_deadlines
from ._protocol._jsonrpc import DEFAULT_INPUT_LIMITS, InputLimits
from ._stores._guard import FAILURE_THRESHOLD, PROBE_AFTER, STORE_TIMEOUT
from ._transport._http import HostPolicy

__all__ = ["DEFAULT_EVENT_STORE", "ServerOptions", "with_overrides"]

#: "Build the default event store (bounded, in memory)": the one spelling of
#: that choice, for :class:`StreamableHTTPApp` and :class:`BoundedSessionManager`
#: alike, typed ``Literal["default"]``; ``None`` turns resumption off.
DEFAULT_EVENT_STORE: Final = "default"


def _normal_path(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str such as '/mcp', not {value!r}")
    return "/" + value.strip("/")


def _count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """The scalar settings of a Streamable HTTP server, each default defined here once.

    Pass it as ``StreamableHTTPApp(server, options=...)``, ``serve(server,
    options=...)`` or ``BoundedSessionManager(server, options=...)`` (which
    reads *limits*, *retry_ms* and the ``store_*`` fields). Invalid values are
    refused here, when the options are built.

    Attributes:
        path: The endpoint path (normalised to one leading ``/``).
        reply_mode: ``"sse"`` answers requests with an SSE stream (resumable;
            progress, logs and server requests travel on it); ``"json"``
            answers with one JSON object, and related messages go to the GET
            stream.
        max_body_bytes: Larger POST bodies get 413.
        input_limits: :class:`InputLimits` for what a JSON body may hold
            (nesting, number and id sizes, stored ``initialize`` params); a
            body over them gets 400 and touches no session.
        retry_ms: The ``retry`` hint (milliseconds) on SSE streams and when
            draining.
        limits: :class:`SessionLimits` for the built-in manager.
        call_limits: :class:`CallLimits`: the budgets of 2026-07-28 requests
            (per client key, method and tool; ``server/discover`` has its own).
        store_timeout: Seconds any store call may take before it counts as a
            failure.
        store_failure_threshold: Consecutive failures of one store after
            which it counts as down: its calls then fail at once (a circuit
            breaker) instead of each waiting *store_timeout*.
        store_probe_after: Seconds a store counts as down before one call
            probes it again.
        metrics_path: Serve Prometheus metrics of the built-in manager at
            this path (needs the ``metrics`` extra); ``None`` for none.
        host_policy: DNS-rebinding protection (:class:`HostPolicy`; by
            default loopback names only when bound to loopback).
        request_timeout: Seconds a request's handler may run without
            reporting progress (both eras); then it is cancelled, and a
            ``tools/call`` answers an ``isError`` result saying it timed out,
            any other method a JSON-RPC error. (``McpServer(request_timeout=)``
            is another wait: a server-to-client request's.)
        max_request_time: Seconds a handler may run at most: progress pushes
            its deadline to *request_timeout* from now, never past this.
        body_timeout: Seconds a POST body may take to arrive once its headers
            have; a slower one gets 408 and its connection is closed.
        refusal_delay: Seconds at most a 429 (a rate limit or a per-client
            in-flight cap) waits before it is sent (jittered: half of it to
            all of it), and never longer than its own ``Retry-After``: a
            client that retries at once then costs the server one refusal
            per connection per delay, not as many as it can send (0: answer
            at once). The in-flight slot is given back first.
        max_delayed_refusals: 429s that may wait at once; more are answered
            at once.
    """

    path: str = "/mcp"
    reply_mode: ReplyMode = "sse"
    max_body_bytes: int = 4 * 1024 * 1024
    input_limits: InputLimits = DEFAULT_INPUT_LIMITS
    retry_ms: int = 1000
    limits: SessionLimits = field(default_factory=SessionLimits)
    call_limits: CallLimits = field(default_factory=CallLimits)
    store_timeout: float = STORE_TIMEOUT
    store_failure_threshold: int = FAILURE_THRESHOLD
    store_probe_after: float = PROBE_AFTER
    metrics_path: str | None = None
    host_policy: HostPolicy = field(default_factory=HostPolicy)
    request_timeout: float = REQUEST_TIMEOUT
    max_request_time: float = MAX_REQUEST_TIME
    body_timeout: float = 30.0
    refusal_delay: float = 1.0
    max_delayed_refusals: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _normal_path("path", self.path))
        if self.reply_mode not in get_args(ReplyMode):
            raise ValueError(f"reply_mode must be 'sse' or 'json', not {self.reply_mode!r}")
        _count("max_body_bytes", self.max_body_bytes, minimum=1)
        if not isinstance(self.input_limits, InputLimits):
            raise TypeError("input_limits must be an InputLimits")
        # 0 is a valid hint (reconnect at once); SSE has no negative retry field.
        _count("retry_ms", self.retry_ms, minimum=0)
        if not isinstance(self.limits, SessionLimits):
            raise TypeError(f"limits must be a SessionLimits, not {self.limits!r}")
        if not isinstance(self.call_limits, CallLimits):
            raise TypeError(f"call_limits must be a CallLimits, not {self.call_limits!r}")
        positive_seconds("store_timeout", self.store_timeout)
        _count("store_failure_threshold", self.store_failure_threshold, minimum=1)
        positive_seconds("store_probe_after", self.store_probe_after)
        if math.isinf(self.store_probe_after):
            raise ValueError("store_probe_after must be finite: a store that is down is retried")
        if self.metrics_path is not None:
            # "" means none, as it always did.
            metrics_path = _normal_path("metrics_path", self.metrics_path)
            object.__setattr__(self, "metrics_path", metrics_path if self.metrics_path else None)
            if self.metrics_path is not None and metrics_path == self.path:
                raise ValueError(f"metrics_path must differ from path ({self.path!r})")
        if not isinstance(self.host_policy, HostPolicy):
            raise TypeError(f"host_policy must be a HostPolicy, not {self.host_policy!r}")
        check_deadlines(self.request_timeout, self.max_request_time)
        positive_seconds("body_timeout", self.body_timeout)
        delay = self.refusal_delay
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(f"refusal_delay must be a number of seconds, not {delay!r}")
        if not 0 <= delay < math.inf:
            raise ValueError(f"refusal_delay must be finite and >= 0, got {delay}")
        _count("max_delayed_refusals", self.max_delayed_refusals, minimum=0)


def with_overrides(options: ServerOptions | None, **overrides: object) -> ServerOptions:
    """*options* (or the defaults) with every override that is not ``None`` applied.

    The one rule of the app's and the manager's keyword arguments: a keyword
    given wins over the same field of *options*; ``None`` leaves the field.
    """
    if options is not None and not isinstance(options, ServerOptions):
        raise TypeError(f"options must be a ServerOptions, not {options!r}")
    given: dict[str, Any] = {name: value for name, value in overrides.items() if value is not None}
    base = options if options is not None else ServerOptions()
    return replace(base, **given) if given else base
