"""Prometheus metrics of one gateway process (prometheus-client; scrape every process's /metrics).

Served by project.health at /metrics, to loopback clients or with ``Authorization: Bearer
<METRICS_TOKEN>``. Recording is cheap (a labelled child's increment; relayed events and bytes are plain integers read at
scrape time) so the relay path can afford it.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

registry = CollectorRegistry(auto_describe=True)

sessions_live = Gauge("switchboard_sessions_live", "Sessions this process holds now.", ["dialect"],
                      registry=registry)
sessions_closed = Counter("switchboard_sessions_closed_total", "Sessions ended, by close reason.",
                          ["dialect", "reason"], registry=registry)
errors = Counter("switchboard_errors_total", "Error events and refusals sent to clients, by code.", ["code"],
                 registry=registry)
upstream_connect = Histogram("switchboard_upstream_connect_seconds", "Time to open an upstream connection.",
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry)
usage_spool_size = Gauge("switchboard_usage_spool_records", "Usage records waiting to reach the ledger.",
                         registry=registry)
usage_flush_lag = Gauge("switchboard_usage_flush_lag_seconds",
                        "Age of the oldest usage not yet in the ledger (0 when everything is written).",
                        registry=registry)
dependency_up = Gauge("switchboard_dependency_up", "1 when the dependency answers this process's probe.",
                      ["dependency"], registry=registry)
draining = Gauge("switchboard_draining", "1 while this process drains (SIGTERM).", registry=registry)


def session_opened(dialect: str) -> None:
    sessions_live.labels(dialect).inc()


def session_closed(dialect: str, reason: str) -> None:
    sessions_live.labels(dialect).dec()
    sessions_closed.labels(dialect, reason or "unknown").inc()


class Relay:
    """Counters of one dialect and direction: plain integers on the relay path (one event loop thread
    updates them, so no lock), read by the registry at scrape time (RelayCollector)."""

    __slots__ = ("events", "bytes")

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0

    def add(self, text: str | bytes) -> None:
        self.events += 1
        self.bytes += len(text)


_relays: dict[tuple[str, str], Relay] = {}


class RelayCollector(Collector):
    """switchboard_relayed_events_total and switchboard_relayed_bytes_total, from the Relay counters."""

    def collect(self):
        events = CounterMetricFamily("switchboard_relayed_events",
                                     "Events relayed (direction: to_upstream or to_client).",
                                     labels=["dialect", "direction"])
        sizes = CounterMetricFamily("switchboard_relayed_bytes", "Bytes relayed (UTF-8 text of each event).",
                                    labels=["dialect", "direction"])
        for (dialect, direction), counts in list(_relays.items()):
            events.add_metric([dialect, direction], counts.events)
            sizes.add_metric([dialect, direction], counts.bytes)
        yield events
        yield sizes


registry.register(RelayCollector())


def relay(dialect: str, direction: str) -> Relay:
    key = (dialect, direction)
    found = _relays.get(key)
    if found is None:
        found = _relays[key] = Relay()
    return found


def error_sent(code: str) -> None:
    errors.labels(code).inc()


def usage_spool_observe(*, records: int, lag_seconds: float) -> None:
    """For the usage writer (accounts/billing): what waits to be written, and for how long."""
    usage_spool_size.set(records)
    usage_flush_lag.set(lag_seconds)


def render() -> tuple[bytes, str]:
    from realtime.gateway import availability

    for dependency in availability.DEPENDENCIES:
        dependency_up.labels(dependency.name).set(1 if dependency.up else 0)
    draining.set(1 if availability.draining() else 0)
    return generate_latest(registry), CONTENT_TYPE_LATEST
