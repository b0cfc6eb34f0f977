"""Deadlines: one timer for many, firing each key when (and only when) a call per key would have."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from portald.deadlines import Deadlines

keys = st.sampled_from("abcdef")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.integers(0, 50)),
        st.tuples(st.just("cancel"), keys, st.just(0)),
        st.tuples(st.just("advance"), st.just(""), st.integers(0, 30)),
    ),
    max_size=40,
)


@settings(max_examples=400)
@given(steps)
def test_fires_as_one_call_per_key_would(script: list[tuple[str, str, int]]) -> None:
    one_timer, per_key = Clock(), Clock()
    fired: list[tuple[float, str]] = []
    expected: list[tuple[float, str]] = []
    deadlines = Deadlines(one_timer, lambda key: fired.append((one_timer.seconds(), key)))
    calls = {}

    def due(key: str) -> None:
        del calls[key]
        expected.append((per_key.seconds(), key))

    for action, key, number in script:
        if action == "set":
            deadlines.set(key, one_timer.seconds() + number)
            if key in calls:
                calls.pop(key).cancel()
            calls[key] = per_key.callLater(number, due, key)
        elif action == "cancel":
            deadlines.cancel(key)
            if key in calls:
                calls.pop(key).cancel()
        else:
            # One second at a time, so that both fire at the same instants.
            for _ in range(number):
                one_timer.advance(1)
                per_key.advance(1)
        assert sorted(fired) == sorted(expected)
        assert len(deadlines) == len(calls)
        assert len(one_timer.getDelayedCalls()) == (1 if calls else 0)


def test_churn_does_not_grow_the_heap_and_a_failure_is_its_own() -> None:
    clock = Clock()
    fired: list[str] = []

    def due(key: str) -> None:
        if key == "bad":
            raise RuntimeError("broken")
        fired.append(key)

    deadlines = Deadlines(clock, due)
    for n in range(10_000):
        deadlines.set(f"k{n % 10}", 3600.0 + n)
        deadlines.set("gone", 7200.0)
        deadlines.cancel("gone")
    assert len(deadlines._heap) <= 2 * len(deadlines) + 65
    deadlines.set("bad", 1.0)
    deadlines.set("good", 1.0)
    clock.advance(1)
    assert fired == ["good"] and len(deadlines) == 10
