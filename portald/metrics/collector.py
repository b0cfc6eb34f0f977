"""
portald's figures as Prometheus metrics, read from the parts' own counts
when scraped: the hot paths only add to an int or a Counter, and the
exposition is prometheus_client's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from portald.dns.server import PortalDNSFactory
from portald.firewall.applyqueue import FirewallStats
from portald.metrics.endings import SessionEndCounts
from portald.metrics.lag import ReactorLag
from portald.refusals import Refusals
from portald.table import AuthorizationTable
from portald.web.intercept import Answer

# The answer label of each intercepted request's answer.
INTERCEPT_LABELS = {Answer.NETWORK_AUTH: "511", Answer.PROBE_REDIRECT: "redirect", Answer.ONLINE: "online"}

# Upstream answers take a few milliseconds to a few seconds (the timeout).
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@attrs.frozen
class Figures:
    """Where each metric is read from."""

    table: AuthorizationTable
    dns: PortalDNSFactory
    intercepts: Mapping[Answer, int]
    logins: Callable[[], Mapping[tuple[str, str], int]]
    endings: SessionEndCounts
    firewall: FirewallStats | None
    leases: Callable[[], list[dict[str, Any]]]
    refusals: Refusals
    lag: ReactorLag
    # The ways in that always have a sample, 0 when nobody used them: the
    # configured sign-in method(s) and staff's (a reload may change them).
    methods: Callable[[], Iterable[str]] = lambda: ("staff",)


class PortaldCollector(Collector):
    """Every portald metric, made from L{Figures} at each scrape."""

    def __init__(self, figures: Figures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self._figures
        sessions = GaugeMetricFamily("portald_sessions", "Signed-in sessions, by method.", labels=["method"])
        by_method = dict.fromkeys(f.methods(), 0)
        for session in f.table.sessions():
            by_method[session.method] = by_method.get(session.method, 0) + 1
        for method, count in sorted(by_method.items()):
            sessions.add_metric([method], count)
        yield sessions
        yield GaugeMetricFamily(
            "portald_always_allowed", "Devices that pass without signing in.", value=len(f.table.allowed())
        )

        logins = CounterMetricFamily(
            "portald_logins", "Sign-in attempts, by method and result.", labels=["method", "result"]
        )
        for (method, result), count in sorted(f.logins().items()):
            logins.add_metric([method, result], count)
        yield logins
        yield _by_label("portald_session_ends", "Sessions ended, by reason.", "reason", f.endings.counts)

        intercepts = {INTERCEPT_LABELS[answer]: count for answer, count in f.intercepts.items()}
        yield _by_label(
            "portald_http_intercepts",
            "Intercepted HTTP requests, by answer.",
            "answer",
            intercepts,
            ("511", "redirect", "online"),
        )

        dns_answers = dict(f.dns.answers)
        dns_answers["redirect"] = dns_answers.get("redirect", 0) + f.dns.fast_path.redirected
        dns_answers["cached"] = dns_answers.get("cached", 0) + f.dns.fast_path.cached
        yield _by_label(
            "portald_dns_queries",
            "DNS queries answered, by answer.",
            "answer",
            dns_answers,
            ("redirect", "forwarded", "cached", "refused", "servfail", "formerr"),
        )

        if f.firewall is not None:
            stats = f.firewall
            applies = CounterMetricFamily(
                "portald_firewall_applies",
                "nft runs (batches and whole loads), by result.",
                labels=["result"],
            )
            applies.add_metric(["ok"], stats.batches + stats.reloads)
            applies.add_metric(["failed"], stats.failures)
            yield applies
            yield SummaryMetricFamily(
                "portald_firewall_apply_seconds",
                "Time nft took per run.",
                count_value=stats.batches + stats.reloads + stats.failures,
                sum_value=stats.run_seconds,
            )

        leases = GaugeMetricFamily("portald_leases", "Active leases read, by lease file.", labels=["source"])
        for source in f.leases():
            leases.add_metric([str(source["path"])], float(source["leases"]))
        yield leases

        yield _by_label(
            "portald_refusals",
            "Input refused by a bound, by its configuration key.",
            "limit",
            f.refusals.counts,
        )
        yield GaugeMetricFamily(
            "portald_reactor_lag_seconds", "How late the latest once-a-second tick ran.", value=f.lag.last
        )
        yield CounterMetricFamily(
            "portald_reactor_stalls", "Ticks that ran more than 100 ms late.", value=f.lag.stalls
        )


def _by_label(
    name: str, documentation: str, label: str, counts: Mapping[str, int], always: tuple[str, ...] = ()
) -> CounterMetricFamily:
    """A counter with one sample per label value; those in C{always} appear even at 0."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value in sorted(set(counts) | set(always)):
        family.add_metric([value], counts.get(value, 0))
    return family


def new_registry() -> tuple[CollectorRegistry, Histogram]:
    """
    A registry with the process's own metrics (memory, CPU, open files), and
    the upstream-latency histogram the forwarder observes into; portald's
    collector is registered once the parts it reads exist.
    """
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    upstream = Histogram(
        "portald_dns_upstream_seconds",
        "Time an upstream resolver took to answer.",
        buckets=UPSTREAM_BUCKETS,
        registry=registry,
    )
    return registry, upstream
