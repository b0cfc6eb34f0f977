"""
One lease file's source on its own: the states of L{SourceState} and their
transitions, and L{LeaseSource}'s debounced reads on a Clock, with the file
read by a stand-in (no files).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from portald.leases.dnsmasq import parse_dnsmasq
from portald.leases.model import Lease, ParseProblem, ParseResult
from portald.leases.source import (
    MAX_DEBOUNCE_INTERVALS,
    FileProblem,
    FileText,
    LeaseSource,
    SourceState,
    Status,
    WatchedFile,
)
from portald.leases.timers import Debounce, PendingCall

NOW = 1_795_581_800
DEBOUNCE = 0.1
PATH = Path("/nonexistent/portald-test/dnsmasq.leases")
ANN = "0 02:00:00:aa:bb:cc 192.0.2.57 phone-of-ann *\n"
BOB = "0 02:00:00:00:00:02 192.0.2.58 laptop *\n"
ANN_LEASE = Lease("192.0.2.57", "02:00:00:aa:bb:cc", "phone-of-ann", None)
BOB_LEASE = Lease("192.0.2.58", "02:00:00:00:00:02", "laptop", None)


def text(body: str, signature: tuple[int, int, int] | None = (1, len(ANN), 1)) -> FileText:
    return FileText(body, ((PATH, body.count("\n") + 1),), signature)


def parsed(state: SourceState, body: str) -> SourceState:
    return state.parsed(text(body), parse_dnsmasq(body, NOW))


# --- the states and their transitions ------------------------------------------------


def test_a_new_source_has_read_nothing() -> None:
    state = SourceState()
    assert (state.status, state.leases, state.signature, state.unconfirmed, state.missing) == (
        Status.NEVER_READ,
        (),
        None,
        None,
        False,
    )


def test_a_clean_read_is_believed() -> None:
    state = parsed(SourceState(), ANN)
    assert (state.status, state.leases) == (Status.GOOD, (ANN_LEASE,))
    assert parsed(state, BOB).leases == (BOB_LEASE,)


def test_a_text_cut_short_is_believed_only_when_seen_twice() -> None:
    good = parsed(SourceState(), ANN)
    cut = ANN + BOB[:10]
    waiting = parsed(good, cut)
    assert (waiting.status, waiting.leases, waiting.unconfirmed) == (Status.GOOD, (ANN_LEASE,), cut)
    # Another cut-short text is seen once again; the same one twice is believed.
    other = parsed(waiting, ANN + BOB[:20])
    assert other.unconfirmed == ANN + BOB[:20] and other.leases == (ANN_LEASE,)
    believed = parsed(other, ANN + BOB[:20])
    assert (believed.status, believed.unconfirmed) == (Status.GOOD, None)
    assert believed.problems == frozenset(
        {FileProblem(str(PATH), 2, f"expected 'expiry mac ip hostname client-id': {BOB[:20]!r}")}
    )


def test_an_empty_file_is_suspect_only_where_there_were_leases() -> None:
    assert parsed(SourceState(), "").status is Status.GOOD
    good = parsed(SourceState(), ANN)
    assert parsed(good, "").unconfirmed == ""
    assert parsed(parsed(good, ""), "").leases == ()


def test_garbage_keeps_the_last_good_leases_until_a_clean_read() -> None:
    good = parsed(SourceState(), ANN)
    kept = parsed(good, "rubbish\n")
    assert (kept.status, kept.leases) == (Status.KEEPING_LAST_GOOD, (ANN_LEASE,))
    assert kept.problems == frozenset(
        {FileProblem(str(PATH), 1, "expected 'expiry mac ip hostname client-id': 'rubbish'")}
    )
    assert parsed(kept, "more rubbish\n").status is Status.KEEPING_LAST_GOOD
    again = parsed(kept, BOB)
    assert (again.status, again.leases, again.problems) == (Status.GOOD, (BOB_LEASE,), frozenset())


def test_garbage_where_there_were_no_leases_is_what_the_file_says() -> None:
    state = parsed(SourceState(), "rubbish\n")
    assert (state.status, state.leases) == (Status.GOOD, ())
    assert len(state.problems) == 1


def test_keeping_the_last_good_leases_holds_through_a_text_cut_short() -> None:
    kept = parsed(parsed(SourceState(), ANN), "rubbish\n")
    waiting = parsed(kept, "rubbish")
    assert (waiting.status, waiting.unconfirmed) == (Status.KEEPING_LAST_GOOD, "rubbish")
    assert parsed(waiting, "rubbish").status is Status.KEEPING_LAST_GOOD


def test_a_missing_file_is_noted_and_the_rest_holds() -> None:
    waiting = parsed(parsed(SourceState(), ANN).read((1, 2, 3)), ANN + "1")
    gone = waiting.absent()
    assert (gone.missing, gone.signature) == (True, None)
    assert (gone.status, gone.leases, gone.unconfirmed) == (Status.GOOD, (ANN_LEASE,), ANN + "1")
    back = gone.read((4, 5, 6))
    assert (back.missing, back.signature) == (False, (4, 5, 6))
    # The cut-short text seen before the file went is confirmed by the same text after.
    assert parsed(back, ANN + "1").unconfirmed is None


def test_an_unreadable_file_forgets_only_its_signature() -> None:
    state = parsed(SourceState().read((1, 2, 3)), ANN).unreadable()
    assert (state.signature, state.status, state.leases, state.missing) == (
        None,
        Status.GOOD,
        (ANN_LEASE,),
        False,
    )


def test_problems_are_placed_in_the_file_they_are_in() -> None:
    earlier = Path("/leases/lease4.csv.2")
    got = FileText("a\nb\nc\nd\n", ((earlier, 2), (PATH, 3)), None)
    assert got.where(ParseProblem(2, "x")) == FileProblem(str(earlier), 2, "x")
    assert got.where(ParseProblem(3, "y")) == FileProblem(str(PATH), 1, "y")


# --- the source on a clock -----------------------------------------------------------


class Reader:
    """Stands in for the file: each read returns the text set last, or raises."""

    def __init__(self) -> None:
        self.body: str | OSError = FileNotFoundError(errno.ENOENT, "No such file or directory")
        self.reads = 0

    def __call__(self, watched: WatchedFile) -> FileText:
        assert watched.path == PATH
        self.reads += 1
        if isinstance(self.body, OSError):
            raise self.body
        return text(self.body)


class One:
    def __init__(self, body: str | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.reader = Reader()
        if body is not None:
            self.reader.body = body
        self.changes = 0
        self.source = LeaseSource(
            WatchedFile("dnsmasq", PATH),
            self.clock,
            debounce=DEBOUNCE,
            on_change=self.changed,
            read_text=self.reader,
        )

    def changed(self) -> None:
        self.changes += 1


def messages(events) -> list[str]:
    return [formatEvent(event) for event in events]


def test_read_says_whether_the_leases_changed() -> None:
    one = One(ANN)
    assert one.source.read() is True
    assert one.source.read() is False
    assert one.source.leases == (ANN_LEASE,)
    assert one.changes == 0  # a read on demand answers its caller


def test_a_burst_of_changes_is_read_once_when_it_is_over() -> None:
    one = One(ANN)
    for _ in range(5):
        one.source.changed()
        one.clock.advance(DEBOUNCE / 2)
    assert one.reader.reads == 0
    one.clock.advance(DEBOUNCE)
    assert (one.reader.reads, one.changes, one.source.leases) == (1, 1, (ANN_LEASE,))
    assert one.clock.getDelayedCalls() == []


def test_a_burst_that_does_not_end_is_read_all_the_same() -> None:
    one = One(ANN)
    for _ in range(4 * MAX_DEBOUNCE_INTERVALS):
        one.source.changed()
        one.clock.advance(DEBOUNCE / 2)
        if one.reader.reads:
            break
    assert one.reader.reads == 1
    assert one.clock.seconds() - NOW <= DEBOUNCE * (MAX_DEBOUNCE_INTERVALS + 1)


def test_a_text_cut_short_is_looked_at_again_one_debounce_later() -> None:
    one = One(ANN)
    one.source.read()
    one.reader.body = ANN + BOB[:10]
    assert one.source.read() is False
    assert [call.getTime() for call in one.clock.getDelayedCalls()] == [NOW + DEBOUNCE]
    one.reader.body = ANN + BOB
    one.clock.advance(DEBOUNCE)
    assert (one.changes, one.source.leases) == (1, (ANN_LEASE, BOB_LEASE))


def test_a_missing_file_is_said_once_until_it_is_back() -> None:
    one = One()
    with capturedLogs() as events:
        one.source.read()
        one.source.read()
        one.reader.body = ANN
        one.source.read()
        one.reader.body = FileNotFoundError(errno.ENOENT, "No such file or directory")
        one.source.read()
    assert messages(events) == [
        f"{PATH} does not exist (yet); waiting for it",
        f"{PATH} does not exist (yet); keeping its leases until they expire",
    ]
    assert one.source.leases == (ANN_LEASE,)


def test_an_unreadable_file_is_said_each_time() -> None:
    one = One(ANN)
    one.source.read()
    one.reader.body = PermissionError(errno.EACCES, "Permission denied")
    with capturedLogs() as events:
        assert one.source.read() is False
        assert one.source.read() is False
    assert messages(events) == [f"cannot read {PATH}: Permission denied"] * 2
    assert (one.source.state.signature, one.source.leases) == (None, (ANN_LEASE,))


def test_keeping_the_last_good_leases_is_said_once() -> None:
    one = One(ANN)
    one.source.read()
    with capturedLogs() as events:
        for body in ("rubbish\n", "rubbish\n", "rubbish", "rubbish"):
            one.reader.body = body
            assert one.source.read() is False
    kept = [m for m in messages(events) if "no lease could be read" in m]
    assert kept == [f"{PATH}: no lease could be read; keeping its last 1 good leases"]
    assert one.source.state.status is Status.KEEPING_LAST_GOOD


def test_each_problem_is_logged_once() -> None:
    one = One()
    with capturedLogs() as events:
        for body in ("rubbish\n" + ANN, "rubbish\n" + BOB, "rubbish\n" + BOB + "junk\n"):
            one.reader.body = body
            one.source.read()
    assert messages(events) == [
        f"{PATH}, line 1: expected 'expiry mac ip hostname client-id': 'rubbish' (skipped)",
        f"{PATH}, line 3: expected 'expiry mac ip hostname client-id': 'junk' (skipped)",
    ]


def test_a_parser_that_raises_changes_nothing_but_the_signature() -> None:
    one = One(ANN)
    one.source.read()
    before = one.source.state

    def broken(text: str, now: float) -> ParseResult:
        raise RuntimeError("a parser bug")

    one.source.parse = broken
    with capturedLogs() as events:
        assert one.source.read() is False
    assert one.source.state == before
    assert any("cannot parse" in m for m in messages(events))


def test_the_poll_reads_only_a_file_whose_signature_changed_and_no_read_is_due() -> None:
    one = One(ANN)
    # The path does not exist, so its signature is None: as at the start.
    assert not one.source.stale()
    one.source.read()  # signature (1, ..., 1) from the stand-in
    assert one.source.stale()
    one.source.changed()
    assert not one.source.stale()
    one.clock.advance(DEBOUNCE)
    assert one.source.stale()


def test_stop_cancels_the_debounced_read() -> None:
    one = One(ANN)
    one.source.changed()
    one.source.stop()
    assert one.clock.getDelayedCalls() == []
    one.clock.advance(DEBOUNCE)
    assert one.reader.reads == 0


# --- the timers themselves ----------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_debounce_calls_once_after_the_last_poke(clock: Clock) -> None:
    calls: list[float] = []
    debounce = Debounce(clock, 1.0, lambda: calls.append(clock.seconds()), patience=10.0)
    assert not debounce.pending
    for _ in range(3):
        debounce.poke()
        clock.advance(0.5)
    clock.advance(0.49)
    assert debounce.pending and calls == []
    clock.advance(0.01)  # a second after the last poke
    assert calls == [2.0] and not debounce.pending


def test_debounce_patience_bounds_the_delay(clock: Clock) -> None:
    calls: list[float] = []
    debounce = Debounce(clock, 1.0, lambda: calls.append(clock.seconds()), patience=3.0)
    while not calls:
        debounce.poke()
        clock.advance(0.5)
    # Pokes until 3 s after the first put it off; the last of those at 2.5 s.
    assert calls == [3.5]


def test_debounce_work_may_poke_again(clock: Clock) -> None:
    calls: list[float] = []

    def work() -> None:
        calls.append(clock.seconds())
        if len(calls) == 1:
            debounce.poke()

    debounce = Debounce(clock, 1.0, work, patience=10.0)
    debounce.poke()
    clock.pump([1.0, 1.0])
    assert calls == [1.0, 2.0]


def test_debounce_cancel(clock: Clock) -> None:
    calls: list[float] = []
    debounce = Debounce(clock, 1.0, lambda: calls.append(clock.seconds()), patience=10.0)
    debounce.cancel()
    debounce.poke()
    debounce.cancel()
    clock.advance(2.0)
    assert calls == [] and not debounce.pending


def test_a_pending_call_set_again_replaces_the_one_before(clock: Clock) -> None:
    calls: list[float] = []
    call = PendingCall(clock, lambda: calls.append(clock.seconds()))
    call.after(5.0)
    call.after(2.0)
    assert call.pending and len(clock.getDelayedCalls()) == 1
    clock.advance(2.0)
    assert calls == [2.0] and not call.pending
    clock.advance(5.0)
    assert calls == [2.0]


# --- reads off the reactor ----------------------------------------------------------


class Elsewhere:
    """An offload that holds each piece of work until the test lets it run (as a thread would, later)."""

    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self._deferred = Deferred
        self.waiting: list[tuple[object, object]] = []

    def __call__(self, work):
        d = self._deferred()
        self.waiting.append((work, d))
        return d

    def run_one(self) -> None:
        work, d = self.waiting.pop(0)
        d.callback(work())


def offloaded_source(contents: list[str]) -> tuple[LeaseSource, Clock, Elsewhere, list[int]]:
    clock = Clock()
    clock.advance(NOW)
    elsewhere = Elsewhere()
    changes: list[int] = []
    source = LeaseSource(
        WatchedFile("dnsmasq", PATH),
        clock,
        debounce=DEBOUNCE,
        on_change=lambda: changes.append(1),
        read_text=lambda watched: text(contents[0]),
        offload=elsewhere,
    )
    return source, clock, elsewhere, changes


def test_an_offloaded_read_is_judged_only_when_it_comes_back() -> None:
    contents = [ANN]
    source, clock, elsewhere, changes = offloaded_source(contents)
    source.changed()
    clock.advance(DEBOUNCE)
    assert len(elsewhere.waiting) == 1 and source.leases == () and changes == []
    elsewhere.run_one()
    assert source.leases == (ANN_LEASE,) and changes == [1]
    assert source.last_read == clock.seconds()


def test_changes_during_an_offloaded_read_make_one_more_read_after_it() -> None:
    contents = [ANN]
    source, clock, elsewhere, changes = offloaded_source(contents)
    source.changed()
    clock.advance(DEBOUNCE)
    work, first = elsewhere.waiting.pop(0)
    done = work()  # the thread reads the file as it is now
    contents[0] = ANN + BOB  # and the server writes again before its answer is judged
    for _ in range(3):
        source.changed()
        clock.advance(DEBOUNCE)
    assert elsewhere.waiting == []  # one read at a time
    first.callback(done)
    assert source.leases == (ANN_LEASE,)
    assert len(elsewhere.waiting) == 1  # and one more for what changed meanwhile
    elsewhere.run_one()
    assert source.leases == (ANN_LEASE, BOB_LEASE) and changes == [1, 1]
    assert elsewhere.waiting == []


def test_an_offloaded_parse_that_raises_keeps_the_last_good_leases() -> None:
    contents = [ANN]
    source, clock, elsewhere, changes = offloaded_source(contents)
    source.changed()
    clock.advance(DEBOUNCE)
    elsewhere.run_one()

    def broken(text: str, now: float) -> ParseResult:
        raise RuntimeError("a parser bug")

    source.parse = broken
    source.changed()
    clock.advance(DEBOUNCE)
    with capturedLogs() as events:
        elsewhere.run_one()
    assert source.leases == (ANN_LEASE,) and changes == [1]
    assert any("cannot parse" in formatEvent(e) for e in events)


def test_an_offloaded_read_of_a_missing_file_waits_for_it() -> None:
    source, clock, elsewhere, changes = offloaded_source([ANN])
    source._read_text = lambda watched: (_ for _ in ()).throw(FileNotFoundError(errno.ENOENT, "gone"))
    source.changed()
    clock.advance(DEBOUNCE)
    elsewhere.run_one()
    assert source.state.missing and changes == []


def test_big_files_are_decoded_in_pieces_exactly_as_whole() -> None:
    from portald.leases.source import DECODE_PIECE, decoded

    # A two-byte character across each piece boundary, and a bad byte.
    data = ("a" * (DECODE_PIECE - 1) + "é" + "b" * (DECODE_PIECE - 2) + "€").encode() * 3 + b"\xff end"
    assert decoded(data) == data.decode("utf-8", errors="replace")
