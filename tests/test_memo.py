"""The hot paths' memos and the periodic-work helper, on a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from portald.memo import BoundedMemo, PerSecondMemo
from portald.periodic import Periodic


def test_a_full_memo_starts_again_empty() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(3)
    for i, key in enumerate("abc"):
        assert memo.remember(key, i) == i
    assert dict(memo) == {"a": 0, "b": 1, "c": 2}
    memo.remember("d", 3)
    assert dict(memo) == {"d": 3}
    assert memo.get("a") is None


def test_a_per_second_memo_holds_for_its_second_only() -> None:
    clock = Clock()
    clock.advance(10.2)
    memo: PerSecondMemo[str, int] = PerSecondMemo(clock, 100)
    memo.current().remember("a", 1)
    clock.advance(0.7)  # 10.9: the same second
    assert memo.current().get("a") == 1
    clock.advance(0.2)  # 11.1: the next one
    assert memo.current().get("a") is None and len(memo) == 0


def test_a_per_second_memo_is_bounded_within_its_second() -> None:
    memo: PerSecondMemo[int, int] = PerSecondMemo(Clock(), 2)
    for i in range(5):
        memo.current().remember(i, i)
    assert len(memo) <= 2 and memo.get(4) == 4


def test_periodic_work_runs_on_its_clock_between_start_and_stop() -> None:
    clock = Clock()
    runs: list[float] = []
    periodic = Periodic(clock, 10, lambda: runs.append(clock.seconds()))
    clock.advance(30)
    assert runs == [] and not periodic.running
    periodic.start()
    periodic.start()  # starting twice is starting once
    clock.advance(10)
    clock.advance(10)
    assert runs == [40.0, 50.0]
    periodic.stop()
    periodic.stop()
    clock.advance(100)
    assert runs == [40.0, 50.0] and clock.getDelayedCalls() == []


def test_periodic_work_can_start_at_once() -> None:
    clock = Clock()
    runs: list[float] = []
    Periodic(clock, 5, lambda: runs.append(clock.seconds()), now=True).start()
    assert runs == [0.0]
