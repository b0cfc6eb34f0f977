"""
The apply queue's state machine on its own: a fake backend's work stands in
for nft, time is a Clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portald.firewall.applyqueue import (
    TRANSITIONS,
    ApplyQueue,
    Event,
    FirewallStats,
    IQueueWork,
    QueueState,
    Timing,
    UnexpectedEvent,
)
from portald.firewall.process import ProcessResult

OK = ProcessResult(0)
FAILED = ProcessResult(1, stderr=b"Error: no\n")


@attrs.define
class Run:
    kind: str  # "batch", "read" or "load"
    changes: tuple[str, ...]
    result: Deferred


@implementer(IQueueWork)
class FakeWork:
    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.took: list[tuple[str, ...]] = []

    def _run(self, kind: str, changes: Sequence[str] = ()) -> Deferred:
        run = Run(kind, tuple(changes), Deferred())
        self.runs.append(run)
        return run.result

    def send_batch(self, changes: Sequence[str]) -> Deferred[ProcessResult]:
        return self._run("batch", changes)

    def read_kernel(self) -> Deferred[object]:
        return self._run("read")

    def load_table(self, before: object) -> Deferred[ProcessResult]:
        return self._run("load")

    def took_effect(self, changes: Sequence[str]) -> None:
        self.took.append(tuple(changes))

    def running(self) -> Run:
        running = [r for r in self.runs if not r.result.called]
        assert len(running) == 1, running
        return running[0]


class Harness:
    def __init__(self, **timing: float) -> None:
        self.clock = Clock()
        self.work = FakeWork()
        self.stats = FirewallStats()
        self.queue: ApplyQueue[str] = ApplyQueue(
            self.clock, self.work, self.stats, table="inet test", timing=Timing(**timing)
        )

    def delays(self) -> list[float]:
        return [call.getTime() - self.clock.seconds() for call in self.clock.getDelayedCalls()]

    def loaded(self) -> None:
        """Start, and let the first whole load succeed."""
        self.queue.start()
        self.clock.advance(0)
        self.work.running().result.callback(None)  # the read
        self.work.running().result.callback(OK)  # the load
        self.clock.advance(0)
        assert self.queue.state is QueueState.IDLE
        assert self.work.took == [()]
        self.work.took.clear()


def test_the_fake_is_the_queues_work() -> None:
    assert verifyObject(IQueueWork, FakeWork())


def test_every_state_is_entered_and_left() -> None:
    entered = set(TRANSITIONS.values())
    left = {state for state, _ in TRANSITIONS}
    assert entered == left == set(QueueState)


def test_start_runs_a_whole_load_then_is_idle() -> None:
    h = Harness()
    assert h.queue.state is QueueState.STOPPED
    h.queue.start()
    assert h.queue.state is QueueState.SCHEDULED and h.delays() == [0]
    h.clock.advance(0)
    assert h.queue.state is QueueState.RUNNING
    assert h.work.running().kind == "read"
    h.work.running().result.callback(None)
    assert h.work.running().kind == "load"
    h.work.running().result.callback(OK)
    assert h.stats.reloads == 1
    assert h.queue.state is QueueState.SCHEDULED
    h.clock.advance(0)
    assert h.queue.state is QueueState.IDLE and h.clock.getDelayedCalls() == []


def test_starting_twice_is_a_bug() -> None:
    h = Harness()
    h.loaded()
    with pytest.raises(UnexpectedEvent):
        h.queue.start()


def test_changes_wait_for_the_batch_delay_and_go_in_one_batch_in_order() -> None:
    h = Harness(batch_delay=0.25)
    h.loaded()
    h.queue.add("a")
    h.queue.add("b")
    assert h.queue.state is QueueState.SCHEDULED and h.delays() == [0.25]
    h.clock.advance(0.25)
    batch = h.work.running()
    assert (batch.kind, batch.changes) == ("batch", ("a", "b"))
    h.queue.add("c")  # while it runs: the next batch
    assert h.queue.state is QueueState.RUNNING and h.clock.getDelayedCalls() == []
    batch.result.callback(OK)
    assert h.work.took == [("a", "b")]
    h.clock.advance(0)
    assert h.work.running().changes == ("c",)
    assert (h.stats.batches, h.stats.changes) == (1, 2)


def test_changes_before_the_first_load_are_superseded_by_it() -> None:
    h = Harness()
    h.queue.add("before start")
    assert h.queue.state is QueueState.STOPPED and h.clock.getDelayedCalls() == []
    h.queue.start()
    h.clock.advance(0)
    h.queue.add("during the read")
    h.work.running().result.callback(None)
    h.queue.add("during the load")
    h.work.running().result.callback(OK)
    assert h.work.took == [("before start", "during the read")]
    h.clock.advance(0)
    assert h.work.running().changes == ("during the load",)


def test_a_due_whole_load_supersedes_changes_until_it_has_made_its_table() -> None:
    h = Harness()
    assert h.queue.next_load_supersedes  # before start: the first run is a whole load
    h.queue.start()
    h.clock.advance(0)
    assert h.queue.next_load_supersedes  # reading the kernel: the load is not made yet
    h.work.running().result.callback(None)
    assert not h.queue.next_load_supersedes  # the load is made: later changes need their batch
    h.work.running().result.callback(FAILED)
    assert h.queue.next_load_supersedes  # it failed: the retry is a whole load, made afresh
    h.clock.advance(h.delays()[0])
    h.work.running().result.callback(None)
    h.work.running().result.callback(OK)
    assert not h.queue.next_load_supersedes
    h.queue.add("a")
    h.clock.advance(0)
    h.queue.rebuild()  # asked for while a batch runs: the load after it is not made yet
    assert h.queue.next_load_supersedes
    h.work.running().result.callback(OK)
    h.clock.advance(0)
    h.work.running().result.callback(None)
    assert not h.queue.next_load_supersedes
    h.work.running().result.callback(OK)
    assert not h.queue.next_load_supersedes


def test_a_failed_batch_is_retried_first_with_a_growing_capped_delay() -> None:
    h = Harness(first_retry=1, longest_retry=3, rebuild_after_failures=100)
    h.loaded()
    h.queue.add("a")
    h.clock.advance(0)
    delays = []
    for change in "bcd":
        with capturedLogs() as events:
            h.work.running().result.callback(FAILED)
        assert "Error: no" in [e for e in events if e["log_level"].name == "error"][0]["message"]
        assert h.queue.state is QueueState.SCHEDULED
        h.queue.add(change)
        delays += h.delays()
        h.clock.advance(h.delays()[0])
    assert delays == [1, 2, 3]
    assert h.work.running().changes == ("a", "b", "c", "d")
    assert h.stats.failures == 3 and h.work.took == []


def test_success_resets_the_backoff() -> None:
    h = Harness()
    h.loaded()
    for _ in range(2):
        h.queue.add("a")
        h.clock.advance(0)
        with capturedLogs():
            h.work.running().result.callback(FAILED)
        assert h.delays() == [0.5]
        h.clock.advance(0.5)
        h.work.running().result.callback(OK)
        h.clock.advance(0)


def test_failures_in_a_row_make_the_next_run_a_whole_load() -> None:
    h = Harness(rebuild_after_failures=2)
    h.loaded()
    h.queue.add("a")
    h.clock.advance(0)
    with capturedLogs():
        h.work.running().result.callback(FAILED)
        h.clock.advance(0.5)
        h.work.running().result.callback(FAILED)
    h.clock.advance(1)
    assert h.work.running().kind == "read"
    h.work.running().result.callback(None)
    h.work.running().result.callback(OK)
    assert h.work.took == [("a",)]  # superseded by the load: its flushes still happen
    assert h.stats.reloads == 2


def test_a_failed_load_is_retried_as_a_load() -> None:
    h = Harness()
    h.queue.start()
    h.clock.advance(0)
    h.work.running().result.callback(None)
    h.queue.add("a")
    with capturedLogs():
        h.work.running().result.callback(FAILED)
    h.clock.advance(0.5)
    assert h.work.running().kind == "read"
    h.work.running().result.callback(None)
    h.work.running().result.callback(OK)
    assert h.work.took == [("a",)]


def test_a_bug_in_the_work_makes_the_next_run_a_whole_load() -> None:
    h = Harness()
    h.loaded()
    h.queue.add("a")
    h.clock.advance(0)
    with capturedLogs() as events:
        h.work.running().result.errback(ZeroDivisionError())
    assert any(e.get("log_failure") for e in events)
    assert h.stats.failures == 1 and h.delays() == [0.5]
    h.clock.advance(0.5)
    assert h.work.running().kind == "read"


def test_applied_fires_with_the_run_that_carries_the_change() -> None:
    h = Harness()
    h.loaded()
    assert h.queue.applied().called
    h.queue.add("a")
    first = h.queue.applied()
    h.clock.advance(0)
    h.queue.add("b")
    second = h.queue.applied()
    h.work.running().result.callback(OK)
    assert first.called and not second.called
    h.clock.advance(0)
    h.work.running().result.callback(OK)
    assert second.called


def test_rebuild_fires_once_a_whole_load_is_in() -> None:
    h = Harness()
    h.loaded()
    done = h.queue.rebuild()
    assert not done.called and h.queue.state is QueueState.SCHEDULED
    h.clock.advance(0)
    h.work.running().result.callback(None)
    assert not done.called
    h.work.running().result.callback(OK)
    assert done.called


def test_stop_while_scheduled_cancels_the_timer() -> None:
    h = Harness()
    h.loaded()
    h.queue.add("a")
    assert h.queue.stop().called
    assert h.queue.state is QueueState.STOPPED and h.clock.getDelayedCalls() == []
    assert h.queue.take_leftovers() == ("a",)


def test_stop_while_running_waits_for_the_run() -> None:
    h = Harness()
    h.loaded()
    h.queue.add("a")
    h.clock.advance(0)
    stopped = h.queue.stop()
    assert h.queue.state is QueueState.STOPPING and not stopped.called
    h.queue.add("b")
    with capturedLogs():
        h.work.running().result.callback(FAILED)
    assert stopped.called and h.queue.state is QueueState.STOPPED
    assert h.clock.getDelayedCalls() == []  # no retry once stopped
    assert h.queue.take_leftovers() == ("a", "b")


def test_no_leftovers_when_a_whole_load_is_due() -> None:
    h = Harness()
    h.queue.add("a")
    h.queue.stop()
    assert h.queue.take_leftovers() == ()
    h.queue.discard_pending()


def test_a_start_while_stopping_carries_on_with_the_run() -> None:
    h = Harness()
    h.loaded()
    h.queue.add("a")
    h.clock.advance(0)
    h.queue.stop()
    h.queue.start()
    assert h.queue.state is QueueState.RUNNING
    h.work.running().result.callback(OK)
    h.clock.advance(0)
    assert h.work.running().kind == "read"  # a start always loads the whole table


def test_backoff() -> None:
    timing = Timing(first_retry=0.5, longest_retry=30)
    assert [timing.backoff(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_events_are_declared() -> None:
    assert {event for _, event in TRANSITIONS} == set(Event)
