"""
The queue of changes on their way to the kernel, as a state machine.

At most one run (an ``nft`` batch, or a whole load) at a time; changes that
arrive meanwhile go in the next run, in order.  A failed run is counted and
retried after a growing delay, its changes first.  After a few failures in a
row, or a bug of ours, the next run is a whole load instead: it supersedes
every queued change (it is made from the table itself), and repairs a table
someone deleted.

The states (L{QueueState}) and what moves between them (L{Event}) are
declared in L{TRANSITIONS}, one entry per transition::

    STOPPED   --start-->    IDLE       and then due: the first run is a whole load
    STOPPING  --start-->    RUNNING    the run in progress carries on
    IDLE      --due-->      SCHEDULED  a change or a reload: run after the batch delay
    SCHEDULED --run-->      RUNNING    the timer fired, with something to apply
    SCHEDULED --nothing-->  IDLE       the timer fired, with nothing left to apply
    RUNNING   --ended-->    SCHEDULED  again at once after a success, after a backoff after a failure
    STOPPING  --ended-->    STOPPED
    IDLE, SCHEDULED --stop--> STOPPED  a pending retry is cancelled
    RUNNING   --stop-->     STOPPING
    STOPPED   --stop-->     STOPPED

"due" in any other state changes nothing: the change goes in the next run.

Whether a run is a batch or a whole load, how many failed in a row and which
changes wait are data, not states: they decide the next run, never whether
there is one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from portald.firewall.process import ProcessResult

log = Logger()

C = TypeVar("C")


class QueueState(enum.Enum):
    STOPPED = "stopped"  # not started, or stopped: nothing runs, nothing is scheduled
    IDLE = "idle"  # started, nothing to apply
    SCHEDULED = "scheduled"  # a run is due when the timer fires (batch delay, or backoff)
    RUNNING = "running"  # nft runs (or the kernel is read before a whole load)
    STOPPING = "stopping"  # stopped while nft runs: stopped once it ends

    # Members are singletons: hashing them by identity (in C, not Enum's
    # Python-level hash of the name) keeps the transition look-up that every
    # queued change takes cheap.
    __hash__ = object.__hash__


class Event(enum.Enum):
    START = "start"
    DUE = "due"
    RUN = "run"
    NOTHING = "nothing"
    ENDED = "ended"
    STOP = "stop"

    __hash__ = object.__hash__  # as QueueState's


TRANSITIONS: dict[tuple[QueueState, Event], QueueState] = {
    (QueueState.STOPPED, Event.START): QueueState.IDLE,
    (QueueState.STOPPING, Event.START): QueueState.RUNNING,
    (QueueState.IDLE, Event.DUE): QueueState.SCHEDULED,
    (QueueState.SCHEDULED, Event.DUE): QueueState.SCHEDULED,
    (QueueState.RUNNING, Event.DUE): QueueState.RUNNING,
    (QueueState.STOPPING, Event.DUE): QueueState.STOPPING,
    (QueueState.STOPPED, Event.DUE): QueueState.STOPPED,
    (QueueState.SCHEDULED, Event.RUN): QueueState.RUNNING,
    (QueueState.SCHEDULED, Event.NOTHING): QueueState.IDLE,
    (QueueState.RUNNING, Event.ENDED): QueueState.SCHEDULED,
    (QueueState.STOPPING, Event.ENDED): QueueState.STOPPED,
    (QueueState.IDLE, Event.STOP): QueueState.STOPPED,
    (QueueState.SCHEDULED, Event.STOP): QueueState.STOPPED,
    (QueueState.RUNNING, Event.STOP): QueueState.STOPPING,
    (QueueState.STOPPED, Event.STOP): QueueState.STOPPED,
}


class UnexpectedEvent(Exception):
    """An event the state has no transition for: a bug of the queue's."""


@attrs.define
class FirewallStats:
    """What the backend has done, for operators and tests."""

    batches: int = 0
    changes: int = 0
    reloads: int = 0
    failures: int = 0
    conntrack_failures: int = 0
    # The last run: when it ended, how long nft took, what went wrong (None: nothing).
    last_run: float | None = None
    last_run_seconds: float = 0.0
    last_error: str | None = None
    # Every run's time together (with batches + reloads + failures: a mean).
    run_seconds: float = 0.0

    def ran(self, ended: float, took: float, error: str | None) -> None:
        self.last_run, self.last_run_seconds, self.last_error = ended, took, error
        self.run_seconds += took


@attrs.frozen
class Timing:
    """
    When the queue runs.  Changes that arrive within C{batch_delay} seconds
    go in one batch.  A failed run is retried after C{first_retry} seconds,
    doubled with each failure in a row up to C{longest_retry}.  After
    C{rebuild_after_failures} failures in a row the next run is a whole load.
    """

    batch_delay: float = 0.0
    first_retry: float = 0.5
    longest_retry: float = 30.0
    rebuild_after_failures: int = 3

    def backoff(self, failures_in_a_row: int) -> float:
        return min(self.first_retry * 2 ** (failures_in_a_row - 1), self.longest_retry)


@attrs.frozen
class Attempt(Generic[C]):
    """One run: a batch of changes, or a whole load that supersedes them."""

    whole: bool
    changes: tuple[C, ...]
    # How many changes ever queued it carries: the waiters it answers.
    covers: int

    @property
    def what(self) -> str:
        return "loading the table" if self.whole else f"applying {len(self.changes)} changes"


class IQueueWork(Interface):
    """What the queue runs: the backend's side of each run."""

    def send_batch(changes: Sequence[Any]) -> Deferred[ProcessResult]:
        """Apply C{changes} (in order) in one run."""

    def read_kernel() -> Deferred[Any]:
        """Read what a whole load starts from; L{load_table} gets the result."""

    def load_table(before: Any) -> Deferred[ProcessResult]:
        """Replace the kernel's rules whole, made from the authorization table as it is now."""

    def took_effect(changes: Sequence[Any]) -> None:
        """C{changes} are in the kernel, applied by a batch or superseded by a whole load."""


class ApplyQueue(Generic[C]):
    """Changes for the kernel, run by C{work} one run at a time on C{clock}."""

    def __init__(
        self, clock: IReactorTime, work: IQueueWork, stats: FirewallStats, *, table: str, timing: Timing
    ) -> None:
        self._clock = clock
        self._work = work
        self._stats = stats
        self._table = table  # for the log
        self._timing = timing
        self.state = QueueState.STOPPED
        self._timer: IDelayedCall | None = None
        self._pending: list[C] = []
        self._rebuild_due = True
        # The whole load in progress has made its table (from the table as it was then).
        self._load_made = False
        self._failures_in_a_row = 0
        self._run_started = 0.0
        # Waiters for "my change is in the kernel": (changes queued when it
        # asked, its Deferred).  A waiter fires as soon as the run carrying
        # its change succeeds, not when the whole queue is empty, which under
        # steady load it may never be.
        self._queued = 0
        self._applied_waiters: list[tuple[int, Deferred[None]]] = []
        self._run_ended_waiters: list[Deferred[None]] = []

    def _move(self, event: Event) -> QueueState:
        """The one transition method: take C{event}, and return the state it left."""
        before = self.state
        try:
            self.state = TRANSITIONS[before, event]
        except KeyError:
            raise UnexpectedEvent(f"{event.value} while {before.value}") from None
        return before

    # --- what the backend asks ---

    def start(self) -> None:
        """Start running; the first run is a whole load."""
        self._move(Event.START)
        self._rebuild_due = True
        self._due(0)

    def stop(self) -> Deferred[None]:
        """Stop running: fires once no nft runs (a pending retry is cancelled)."""
        self._move(Event.STOP)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.state is not QueueState.STOPPING:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._run_ended_waiters.append(waiter)
        return waiter

    def add(self, change: C) -> None:
        self._pending.append(change)
        self._queued += 1
        self._due(self._timing.batch_delay)

    def rebuild(self) -> Deferred[None]:
        """Make the next run a whole load; fires once one succeeded."""
        self._rebuild_due = True
        waiter = self.applied()
        self._due(0)
        return waiter

    def applied(self) -> Deferred[None]:
        """Fires once every change added so far is in the kernel."""
        if not self._busy and not self._pending and not self._rebuild_due:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._applied_waiters.append((self._queued, waiter))
        return waiter

    def take_leftovers(self) -> tuple[C, ...]:
        """Once stopped: the changes still waiting, for one last batch (none if a whole load is due)."""
        if self._rebuild_due:
            return ()
        leftovers, self._pending = tuple(self._pending), []
        return leftovers

    def discard_pending(self) -> None:
        self._pending.clear()

    @property
    def pending(self) -> tuple[C, ...]:
        """The changes waiting for the next run, in order."""
        return tuple(self._pending)

    @property
    def next_load_supersedes(self) -> bool:
        """
        A whole load is due and has not made its table yet: it will write
        what a change made now says, read from the authorization table
        itself, so the change's commands would go unread.
        """
        return self._rebuild_due and not self._load_made

    @property
    def _busy(self) -> bool:
        return self.state in (QueueState.RUNNING, QueueState.STOPPING)

    # --- running ---

    def _due(self, delay: float) -> None:
        if self._move(Event.DUE) is QueueState.IDLE:
            self._timer = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._rebuild_due and not self._pending:
            self._move(Event.NOTHING)
            self._applied_up_to(self._queued)
            return
        self._move(Event.RUN)
        self._run_started = self._clock.seconds()
        if self._rebuild_due:
            what = "loading the table"
            d = self._work.read_kernel()
            d.addCallback(self._load)
        else:
            what = "applying changes"
            attempt = self._take(whole=False)
            d = self._work.send_batch(attempt.changes)
            d.addCallback(self._ran, attempt)
        d.addErrback(self._bug, what)

    def _load(self, before: Any) -> Deferred[None]:
        # The load is made now, after the read: it supersedes every change queued so far.
        attempt = self._take(whole=True)
        self._load_made = True
        return self._work.load_table(before).addCallback(self._ran, attempt)

    def _take(self, whole: bool) -> Attempt[C]:
        changes, self._pending = tuple(self._pending), []
        return Attempt(whole, changes, covers=self._queued)

    def _ran(self, result: ProcessResult, attempt: Attempt[C]) -> None:
        ended = self._clock.seconds()
        self._stats.ran(ended, ended - self._run_started, None if result.succeeded else result.message())
        if not result.succeeded:
            self._count_failure()
            log.error(
                "nft failed {what} in {table} (failure {count}): {message}",
                what=attempt.what,
                table=self._table,
                count=self._stats.failures,
                message=result.message(),
            )
            self._pending[:0] = attempt.changes
            if self._failures_in_a_row >= self._timing.rebuild_after_failures:
                self._rebuild_due = True
            self._end_run(retry=True)
            return
        self._failures_in_a_row = 0
        if attempt.whole:
            self._rebuild_due = False
            self._stats.reloads += 1
        else:
            self._stats.batches += 1
            self._stats.changes += len(attempt.changes)
        self._work.took_effect(attempt.changes)
        self._applied_up_to(attempt.covers)
        self._end_run(retry=False)

    def _bug(self, failure: Failure, what: str) -> None:
        # A bug of ours, not nft's: log it, and rebuild from the table later
        # rather than stall the queue or lose the reactor.
        log.failure("firewall: unexpected error {what}", failure, what=what)
        self._count_failure()
        self._rebuild_due = True
        self._end_run(retry=True)

    def _count_failure(self) -> None:
        self._failures_in_a_row += 1
        self._stats.failures += 1

    def _end_run(self, retry: bool) -> None:
        """The run ended: go on with the queue, now or after a backoff delay (unless stopping)."""
        self._move(Event.ENDED)
        self._load_made = False
        waiters, self._run_ended_waiters = self._run_ended_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self.state is not QueueState.SCHEDULED:
            return
        delay = 0.0
        if retry:
            delay = self._timing.backoff(self._failures_in_a_row)
            log.info("retrying nft in {delay:.1f}s", delay=delay)
        self._timer = self._clock.callLater(delay, self._fire)

    def _applied_up_to(self, count: int) -> None:
        """The first C{count} changes ever queued are in the kernel."""
        if self._rebuild_due:
            return  # a whole load is due: it is what waiters wait for
        ready = [waiter for target, waiter in self._applied_waiters if target <= count]
        self._applied_waiters = [(t, w) for t, w in self._applied_waiters if t > count]
        for waiter in ready:
            waiter.callback(None)
