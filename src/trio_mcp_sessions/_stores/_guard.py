"""The one bounded path every store call takes: a timeout and a circuit breaker.

A store that is down (Redis frozen, a SQLite file locked by another process)
would otherwise make every call wait the full ``store_timeout``: a tool call
that emits four events then takes four timeouts. :class:`CircuitBreaker` is
the sans-IO part (plain numbers in, a decision out); :class:`StoreGuard`
applies it with trio: it bounds the call, counts the failure, maps it to
:class:`~trio_mcp_sessions.StoreUnavailable`, and while the circuit is open
fails at once instead of waiting.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import trio

from .._errors import StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["CircuitBreaker", "CircuitState", "StoreGuard", "StoreGuardStatistics"]

logger = logging.getLogger("trio_mcp_sessions.stores")

T = TypeVar("T")

#: Seconds a store call may take before it counts as a failure (the default everywhere).
STORE_TIMEOUT: Final = 2.0
#: Failures in a row after which a store counts as down.
FAILURE_THRESHOLD: Final = 2
#: Seconds before a store that is down is probed again.
PROBE_AFTER: Final = 5.0


class CircuitState(enum.Enum):
    """Where a :class:`CircuitBreaker` stands."""

    CLOSED = "closed"
    """Calls go to the store."""
    OPEN = "open"
    """The store is known to be down: calls fail at once."""
    HALF_OPEN = "half_open"
    """The pause is over: one probe call goes to the store; the rest fail at once."""


@final
class CircuitBreaker:
    """Closed, then open after *failure_threshold* failures in a row, then a probe.

    Sans-IO: the caller passes the time and reports each call's outcome, so
    the state machine is tested with plain numbers.

    Args:
        failure_threshold: Consecutive failures that open the circuit.
        reset_after: Seconds the circuit stays open before one probe may pass.
    """

    def __init__(
        self, *, failure_threshold: int = FAILURE_THRESHOLD, reset_after: float = PROBE_AFTER
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise TypeError("failure_threshold must be an int")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not reset_after > 0 or math.isinf(reset_after):
            raise ValueError("reset_after must be a positive, finite number of seconds")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.opened = 0
        self._opened_at = -math.inf
        self._probing = False

    def allow(self, now: float) -> bool:
        """Whether a call may go to the store now (``False``: fail it at once).

        A ``True`` in the half-open state makes that call the probe: report
        its outcome with :meth:`success`, :meth:`failure` or :meth:`abandon`.
        """
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            if now < self._opened_at + self.reset_after:
                return False
            self.state = CircuitState.HALF_OPEN
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """A call reached the store and it answered: close the circuit."""
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._probing = False

    def failure(self, now: float) -> None:
        """A call failed or timed out; open the circuit at the threshold or a failed probe."""
        self.consecutive_failures += 1
        self._probing = False
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self.state = CircuitState.OPEN
            self._opened_at = now
            self.opened += 1
        elif self.state is CircuitState.OPEN:
            # A call allowed before the circuit opened failed late: restart the pause.
            self._opened_at = now

    def abandon(self) -> None:
        """A call ended without an outcome (cancelled): the next call may probe."""
        self._probing = False

    def retry_in(self, now: float) -> float:
        """Seconds until a probe may pass (0 when calls pass now)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_after - now)


@dataclass(frozen=True, slots=True)
class StoreGuardStatistics:
    """A snapshot of one guarded store's counters.

    Attributes:
        state: The circuit's :class:`CircuitState` value.
        calls: Calls that went to the store.
        failures: Calls that failed or timed out (also in ``store_errors``).
        timeouts: Of those, calls cut by ``store_timeout``.
        fast_failures: Calls refused at once because the circuit was open.
        opened: Times the circuit opened.
    """

    state: str
    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    fast_failures: int = 0
    opened: int = 0


@final
class StoreGuard:
    """Bounds every call to one store: ``store_timeout``, failure count, circuit breaker.

    Args:
        name: What the store is, for logs and statistics (``"events"``, ...).
        timeout: Seconds a call may take before it counts as a failure.
        failure_threshold: Consecutive failures that open the circuit.
        reset_after: Seconds before an open circuit lets one probe through.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float,
        failure_threshold: int = FAILURE_THRESHOLD,
        reset_after: float = PROBE_AFTER,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.breaker = CircuitBreaker(failure_threshold=failure_threshold, reset_after=reset_after)
        self._calls = 0
        self._failures = 0
        self._timeouts = 0
        self._fast_failures = 0

    @property
    def failures(self) -> int:
        """Calls that failed, timed out or were refused by the open circuit."""
        return self._failures + self._fast_failures

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        """``await fn(*args, **kw)``, bounded; always a checkpoint.

        Errors other than :class:`StoreUnavailable` (``EventsPurged``, a
        ``ValueError`` for a bad argument) mean the store answered; they pass
        through and count as a success.

        Raises:
            StoreUnavailable: The store failed, did not answer within the
                timeout, or is known to be down (the circuit is open).
        """
        breaker = self.breaker
        now = trio.current_time()
        if not breaker.allow(now):
            await trio.lowlevel.checkpoint()
            self._fast_failures += 1
            raise StoreUnavailable(
                f"{what}: the {self.name} store is down (next try in {breaker.retry_in(now):.1f} s)"
            )
        self._calls += 1
        outcome = False
        try:
            with trio.fail_after(self.timeout):
                result = await fn(*args, **kw)
        except trio.TooSlowError:
            self._timeouts += 1
            self.record_failure(what, f"timed out after {self.timeout} s")
            outcome = True
            raise StoreUnavailable(f"{what} timed out") from None
        except StoreUnavailable as exc:
            self.record_failure(what, str(exc))
            outcome = True
            raise
        except Exception:
            breaker.success()
            outcome = True
            raise
        finally:
            if not outcome and breaker.state is CircuitState.HALF_OPEN:
                breaker.abandon()
        breaker.success()
        return result

    def record_failure(self, what: str, why: str) -> None:
        """Count and log a failure of a call made without :meth:`call` (a ``*_nowait`` one)."""
        self._failures += 1
        was = self.breaker.state
        self.breaker.failure(trio.current_time())
        if self.breaker.state is CircuitState.OPEN and was is not CircuitState.OPEN:
            logger.warning(
                "store call %s failed: %s; %s store marked down for %s s",
                what,
                why,
                self.name,
                self.breaker.reset_after,
            )
        else:
            logger.warning("store call %s failed: %s", what, why)

    def statistics(self) -> StoreGuardStatistics:
        return StoreGuardStatistics(
            state=self.breaker.state.value,
            calls=self._calls,
            failures=self._failures,
            timeouts=self._timeouts,
            fast_failures=self._fast_failures,
            opened=self.breaker.opened,
        )
