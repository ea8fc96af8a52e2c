"""Prometheus exposition of the session manager's statistics (optional extra).

Uses ``prometheus-client`` (``pip install 'trio-mcp-sessions[metrics]'``): a
custom collector reads :meth:`BoundedSessionManager.statistics` at scrape
time, so nothing is counted twice and no hot path pays for metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._manager import ManagerStatistics

__all__ = ["MetricsExporter"]


class MetricsExporter:
    """Renders ``/metrics`` for one statistics source.

    Raises:
        ImportError: When ``prometheus-client`` is not installed, with a hint.
    """

    def __init__(self, statistics: Callable[[], ManagerStatistics], *, prefix: str = "mcp") -> None:
        try:
            from prometheus_client import CollectorRegistry
            from prometheus_client.exposition import CONTENT_TYPE_LATEST
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise ImportError(
                "metrics need prometheus-client: pip install 'trio-mcp-sessions[metrics]'"
            ) from exc
        self._statistics = statistics
        self._prefix = prefix
        self.content_type = CONTENT_TYPE_LATEST
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self._statistics()
        p = self._prefix
        yield GaugeMetricFamily(
            f"{p}_sessions_live", "Live MCP sessions.", value=stats.live_sessions
        )
        yield GaugeMetricFamily(
            f"{p}_sessions_max", "The session cap (max_sessions).", value=stats.max_sessions
        )
        yield GaugeMetricFamily(
            f"{p}_sessions_busy",
            "Sessions with a request in flight or a stream open.",
            value=stats.busy_sessions,
        )
        yield CounterMetricFamily(f"{p}_sessions_created", "Sessions created.", value=stats.created)
        closed = CounterMetricFamily(
            f"{p}_sessions_closed", "Sessions closed, by reason.", labels=["reason"]
        )
        for reason, count in sorted(stats.closed_by_reason.items()):
            closed.add_metric([reason], count)
        yield closed
        refused = CounterMetricFamily(
            f"{p}_sessions_refused",
            "Session creations refused, by reason (capacity, rate_limit, unavailable).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.refused_by_reason.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            f"{p}_sessions_evicted", "Sessions evicted to make room.", value=stats.evicted
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self._registry)
