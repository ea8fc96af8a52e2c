"""Prometheus exposition of the session manager's statistics (optional extra).

Uses ``prometheus-client`` (``pip install 'trio-mcp-sessions[metrics]'``): a
custom collector reads :meth:`BoundedSessionManager.statistics` at scrape
time, so nothing is counted twice and no hot path pays for metrics.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ._transport._auth import OUTCOMES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from ._handles import HandleStatistics
    from ._manager import ManagerStatistics
    from ._manager._budgets import CallBudgetStatistics
    from ._stateless._listen import ListenStatistics
    from ._stateless._service import SessionlessStatistics
    from ._transport._asgi import TransportStatistics

__all__ = ["MetricsExporter"]


class MetricsExporter:
    """Renders ``/metrics`` for one statistics source.

    Raises:
        ImportError: When ``prometheus-client`` is not installed, with a hint.
    """

    def __init__(
        self,
        statistics: Callable[[], ManagerStatistics],
        *,
        transport: Callable[[], TransportStatistics] | None = None,
        listen: Callable[[], ListenStatistics] | None = None,
        sessionless: Callable[[], SessionlessStatistics] | None = None,
        calls: Callable[[], CallBudgetStatistics] | None = None,
        handles: Sequence[Callable[[], HandleStatistics]] = (),
        prefix: str = "mcp",
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry
            from prometheus_client.exposition import CONTENT_TYPE_LATEST
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise ImportError(
                "metrics need prometheus-client: pip install 'trio-mcp-sessions[metrics]'"
            ) from exc
        self._statistics = statistics
        self._transport = transport
        self._listen = listen
        self._sessionless = sessionless
        self._calls = calls
        #: ``HandleStore.statistics`` of each store, labelled by its name.
        self.handles = list(handles)
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
            "Session creations and requests refused, by reason "
            "(capacity, rate_limit, unavailable, inflight).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.refused_by_reason.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            f"{p}_sessions_evicted", "Sessions evicted to make room.", value=stats.evicted
        )
        yield GaugeMetricFamily(
            f"{p}_requests_in_flight",
            "Requests whose handlers are running.",
            value=stats.requests_in_flight,
        )
        yield CounterMetricFamily(
            f"{p}_requests_timed_out",
            "Session requests whose handler its deadline cut (request_timeout, max_request_time).",
            value=stats.timed_out,
        )
        yield CounterMetricFamily(
            f"{p}_readers_dropped",
            "Responses dropped because their reader stopped taking (write_timeout).",
            value=stats.dropped_readers,
        )
        if self._transport is not None:
            transport = self._transport()
            http = CounterMetricFamily(
                f"{p}_http_refused",
                "Requests answered with an HTTP error before reaching a session, by status.",
                labels=["status"],
            )
            for status, count in sorted(transport.refused_by_status.items()):
                http.add_metric([str(status)], count)
            yield http
            yield CounterMetricFamily(
                f"{p}_connections_cut",
                "Connections reset: a write lasted over write_timeout, or outlasted the grace.",
                value=transport.connections_cut,
            )
            yield CounterMetricFamily(
                f"{p}_http_refusals_delayed",
                "429s sent after waiting refusal_delay (a client retrying at once is slowed).",
                value=transport.refusals_delayed,
            )
            yield GaugeMetricFamily(
                f"{p}_http_refusals_delaying",
                "429s waiting out refusal_delay now (at most max_delayed_refusals).",
                value=transport.refusals_delaying,
            )
            yield from self._inflight_metrics(transport)
            if transport.auth is not None:
                yield from self._auth_metrics(transport)
        if self._listen is not None:
            yield from self._listen_metrics(self._listen())
        if self._sessionless is not None:
            yield from self._sessionless_metrics(self._sessionless())
        if self._calls is not None:
            yield from self._call_metrics(self._calls())
        if self.handles:
            yield from self._handle_metrics([read() for read in self.handles])
        yield GaugeMetricFamily(
            f"{p}_subscriptions",
            "resources/subscribe URIs held by live sessions.",
            value=stats.subscriptions,
        )
        yield GaugeMetricFamily(
            f"{p}_session_slots_held",
            "Tokens of the session cap's CapacityLimiter held (settles at live sessions).",
            value=stats.slots_held,
        )
        yield CounterMetricFamily(
            f"{p}_store_errors",
            "Store calls that failed, timed out or were refused while the store was down.",
            value=stats.store_errors,
        )
        if not stats.stores:
            return
        state = GaugeMetricFamily(
            f"{p}_store_circuit_open",
            "1 while a store counts as down (its circuit is open or probing), else 0.",
            labels=["store"],
        )
        counters = {
            name: CounterMetricFamily(f"{p}_store_{name}", text, labels=["store"])
            for name, text in (
                ("calls", "Store calls that went to the store."),
                ("failures", "Store calls that failed or timed out."),
                ("timeouts", "Store calls cut by store_timeout."),
                ("fast_failures", "Store calls refused at once while the store was down."),
                ("circuit_opened", "Times a store was marked down (its circuit opened)."),
            )
        }
        for store, guard in sorted(stats.stores.items()):
            state.add_metric([store], 0 if guard.state == "closed" else 1)
            counters["calls"].add_metric([store], guard.calls)
            counters["failures"].add_metric([store], guard.failures)
            counters["timeouts"].add_metric([store], guard.timeouts)
            counters["fast_failures"].add_metric([store], guard.fast_failures)
            counters["circuit_opened"].add_metric([store], guard.opened)
        yield state
        yield from counters.values()

    def _auth_metrics(self, transport: TransportStatistics) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self._prefix
        auth = transport.auth
        assert auth is not None
        outcomes = CounterMetricFamily(
            f"{p}_auth_requests",
            "Requests by what the resource server made of their credentials "
            f"({', '.join(OUTCOMES)}).",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            outcomes.add_metric([outcome], getattr(auth, outcome))
        yield outcomes
        yield GaugeMetricFamily(
            f"{p}_auth_failing_keys",
            "Client keys with failed verifications in their window (max_failed_verifications).",
            value=auth.failing_keys,
        )
        yield CounterMetricFamily(
            f"{p}_auth_metadata_served",
            "Protected Resource Metadata documents served.",
            value=auth.metadata_served,
        )
        verifier = auth.verifier
        if dataclasses.is_dataclass(verifier):
            # The verifier's own counts: JWKS fetches, introspections, cache hits, ...
            # Sizes held now (cached_*, inflight) are gauges, the rest counters.
            for item in dataclasses.fields(verifier):
                value = getattr(verifier, item.name)
                if isinstance(value, bool) or not isinstance(value, int):
                    continue
                name = f"{p}_auth_verifier_{item.name}"
                text = f"{type(verifier).__name__}.{item.name}"
                if item.name.startswith("cached") or item.name == "inflight":
                    yield GaugeMetricFamily(name, text, value=value)
                else:
                    yield CounterMetricFamily(name, text, value=value)

    def _inflight_metrics(self, transport: TransportStatistics) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self._prefix
        pools = [
            (pool, stats)
            for pool, stats in (
                ("calls", transport.inflight),
                ("discover", transport.inflight_discover),
            )
            if stats is not None
        ]
        if not pools:
            return
        gauges = {
            name: GaugeMetricFamily(f"{p}_inflight_{name}", text, labels=["pool"])
            for name, text in (
                ("requests", "POSTs holding an in-flight slot now (max_inflight)."),
                ("max", "The in-flight cap."),
                ("clients", "Client keys holding an in-flight slot now."),
                ("queued", "Requests waiting in line for an in-flight slot now."),
            )
        }
        admitted = CounterMetricFamily(
            f"{p}_inflight_admitted", "In-flight slots handed out.", labels=["pool"]
        )
        refused = CounterMetricFamily(
            f"{p}_inflight_refused",
            "Requests refused at an in-flight cap: global (503) or per_client (429).",
            labels=["pool", "cap"],
        )
        timeouts = CounterMetricFamily(
            f"{p}_inflight_queue_timeouts",
            "Requests that waited in line for a slot and were refused.",
            labels=["pool"],
        )
        for pool, stats in pools:
            gauges["requests"].add_metric([pool], stats.in_flight)
            gauges["max"].add_metric([pool], stats.max_inflight)
            gauges["clients"].add_metric([pool], stats.clients)
            gauges["queued"].add_metric([pool], stats.queued)
            admitted.add_metric([pool], stats.admitted)
            refused.add_metric([pool, "global"], stats.refused_busy)
            refused.add_metric([pool, "per_client"], stats.refused_per_client)
            timeouts.add_metric([pool], stats.queue_timeouts)
        yield from gauges.values()
        yield admitted
        yield refused
        yield timeouts

    def _listen_metrics(self, listen: ListenStatistics) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self._prefix
        yield GaugeMetricFamily(
            f"{p}_listen_streams", "Open subscriptions/listen streams.", value=listen.open_streams
        )
        yield GaugeMetricFamily(
            f"{p}_listen_streams_max", "The listen-stream cap.", value=listen.max_streams
        )
        yield GaugeMetricFamily(
            f"{p}_listen_streams_per_client_max",
            "The per-client listen-stream cap.",
            value=listen.max_streams_per_client,
        )
        yield GaugeMetricFamily(
            f"{p}_listen_clients",
            "Client keys with a listen stream open.",
            value=listen.listening_clients,
        )
        for name, text, value in (
            ("opened", "Listen streams acknowledged.", listen.opened),
            ("refused", "Listen requests refused (a cap, draining).", listen.refused),
            (
                "refused_per_client",
                "Listen requests refused at the per-client cap.",
                listen.refused_per_client,
            ),
            ("ended_slow", "Listen streams ended: their reader fell behind.", listen.ended_slow),
            (
                "ended_lifetime",
                "Listen streams ended gracefully at their maximum lifetime.",
                listen.ended_lifetime,
            ),
            (
                "ended_token_expired",
                "Listen streams ended gracefully when their access token expired.",
                listen.ended_token_expired,
            ),
            (
                "evicted",
                "Listen streams ended gracefully to make room for a new one.",
                listen.evicted,
            ),
            ("delivered", "Notifications put on listen streams.", listen.delivered),
        ):
            yield CounterMetricFamily(f"{p}_listen_{name}", text, value=value)

    def _sessionless_metrics(self, stats: SessionlessStatistics) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self._prefix
        yield GaugeMetricFamily(
            f"{p}_sessionless_in_flight",
            "2026-07-28 requests whose handlers are running.",
            value=stats.requests_in_flight,
        )
        for name, text, value in (
            ("answered", "2026-07-28 requests answered with a complete result.", stats.answered),
            (
                "input_required",
                "2026-07-28 requests answered with an InputRequiredResult.",
                stats.input_required,
            ),
            ("errors", "2026-07-28 requests answered with a JSON-RPC error.", stats.errors),
            ("cancelled", "2026-07-28 requests whose client left first.", stats.cancelled),
            (
                "timed_out",
                "2026-07-28 requests whose handler its deadline cut (answered all the same).",
                stats.timed_out,
            ),
            (
                "refused_request_states",
                "requestState tokens refused (tampered, expired, replayed, ...).",
                stats.refused_states,
            ),
            (
                "refused_inputs",
                "Retries refused: their inputResponses was over max_input_bytes.",
                stats.refused_inputs,
            ),
        ):
            yield CounterMetricFamily(f"{p}_sessionless_{name}", text, value=value)
        by_reason = CounterMetricFamily(
            f"{p}_sessionless_request_states_refused",
            "requestState tokens refused, by reason (expired, pending_too_long, replayed, ...).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.refused_states_by_reason.items()):
            by_reason.add_metric([reason], count)
        yield by_reason

    def _call_metrics(self, stats: CallBudgetStatistics) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self._prefix
        yield CounterMetricFamily(
            f"{p}_call_budget_admitted",
            "2026-07-28 requests that spent from their rate-limit budgets.",
            value=stats.admitted,
        )
        refused = CounterMetricFamily(
            f"{p}_call_budget_refused",
            "2026-07-28 requests refused with 429, by the budget that refused "
            "(calls, method, tool, discover), its scope (global, per_client) and name.",
            labels=["budget", "scope", "name"],
        )
        for budget, count in sorted(
            stats.refused.items(), key=lambda item: (item[0].kind, item[0].name, item[0].scope)
        ):
            refused.add_metric([budget.kind, budget.scope, budget.name], count)
        yield refused
        yield GaugeMetricFamily(
            f"{p}_call_budget_tracked_keys",
            "Per-client call-budget windows this instance holds.",
            value=stats.tracked_keys,
        )
        yield CounterMetricFamily(
            f"{p}_call_budget_fallbacks",
            "Requests budgeted by local windows because the shared limiter was unreachable.",
            value=stats.fallbacks,
        )
        if stats.store is not None:
            yield GaugeMetricFamily(
                f"{p}_call_budget_store_down",
                "1 while the shared call limiter counts as down (local windows apply), else 0.",
                value=0 if stats.store.state == "closed" else 1,
            )

    def _handle_metrics(self, stores: list[HandleStatistics]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self._prefix
        gauges = [
            GaugeMetricFamily(f"{p}_handles_live", "Live handles.", labels=["store"]),
            GaugeMetricFamily(f"{p}_handles_max", "The global handle cap.", labels=["store"]),
            GaugeMetricFamily(
                f"{p}_handles_max_per_principal", "The per-principal handle cap.", labels=["store"]
            ),
        ]
        closed = CounterMetricFamily(
            f"{p}_handles_closed",
            "Handles removed, by reason (deleted, expired, evicted).",
            labels=["store", "reason"],
        )
        counters = {
            name: CounterMetricFamily(f"{p}_handles_{name}", text, labels=["store"])
            for name, text in (
                ("created", "Handles minted."),
                ("refused", "Handle creates refused at a cap (REJECT), and values too large."),
                ("not_found", "Handle lookups answered expired or unknown (or another's)."),
                ("store_errors", "Handle backend calls that failed."),
            )
        }
        for stats in sorted(stores, key=lambda s: s.name):
            label = [stats.name]
            for gauge, value in zip(
                gauges, (stats.handles, stats.max_handles, stats.max_per_principal), strict=True
            ):
                gauge.add_metric(label, value)
            for reason in ("deleted", "expired", "evicted"):
                closed.add_metric([stats.name, reason], getattr(stats, reason))
            for name, counter in counters.items():
                counter.add_metric(label, getattr(stats, name))
        yield from gauges
        yield closed
        yield from counters.values()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self._registry)
