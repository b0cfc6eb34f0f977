from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from portald.refusals import Refusals


def logged(events, key):
    return [e[key] for e in events if e.get("log_namespace") == "portald.refusals"]


def test_counts_every_refusal_and_logs_once_per_client_per_window():
    clock = Clock()
    refusals = Refusals(clock, window=60)
    with capturedLogs() as events:
        for _ in range(100):
            refusals.refuse("http.max_body", "192.0.2.10")
        refusals.refuse("http.max_body", "192.0.2.11")
        clock.advance(61)
        refusals.refuse("http.max_body", "192.0.2.10")
    assert refusals.counts["http.max_body"] == 102
    assert logged(events, "client") == ["192.0.2.10", "192.0.2.11", "192.0.2.10"]
    assert set(logged(events, "log_level")) == {LogLevel.warn}


def test_different_limits_are_logged_separately():
    refusals = Refusals(Clock())
    with capturedLogs() as events:
        refusals.refuse("http.max_body", "192.0.2.10")
        refusals.refuse("http.head_timeout", "192.0.2.10")
    assert logged(events, "limit") == ["http.max_body", "http.head_timeout"]
