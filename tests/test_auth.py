"""Sign-in methods behind IAuthenticator, and the per-device attempt limit."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from portald.auth.interface import AuthResult, Credentials, IAuthenticator
from portald.auth.limits import MAX_WAITING, AttemptLimiter, GuessingBudget
from portald.auth.methods import AccessCode, ClickThrough, ways_for
from portald.config import WayIn

from .web_support import make_config


def result_of(deferred) -> AuthResult:
    results: list = []
    deferred.addBoth(results.append)
    (result,) = results
    assert isinstance(result, AuthResult)
    return result


def attempt(**fields: str) -> Credentials:
    return Credentials("02:00:00:00:00:0a", "192.0.2.10", fields)


def test_both_methods_provide_the_interface() -> None:
    assert verifyObject(IAuthenticator, ClickThrough())
    assert verifyObject(IAuthenticator, AccessCode(("a",)))


def test_click_through() -> None:
    method = ClickThrough()
    assert result_of(method.authenticate(attempt(accept="yes"))).ok
    refused = result_of(method.authenticate(attempt()))
    assert not refused.ok and not refused.counts


def test_access_code() -> None:
    method = AccessCode(("Room-101", "sésame"))
    assert result_of(method.authenticate(attempt(code="room-101"))).ok
    assert result_of(method.authenticate(attempt(code=" SÉSAME\t"))).ok
    wrong = result_of(method.authenticate(attempt(code="room-10")))
    assert not wrong.ok and wrong.counts and "not valid" in wrong.message
    empty = result_of(method.authenticate(attempt(code="  ")))
    assert not empty.ok and not empty.counts
    with pytest.raises(ValueError):
        AccessCode(())


def test_the_configuration_picks_the_method() -> None:
    config = make_config()
    (way,) = ways_for(config)
    assert isinstance(way.authenticator, ClickThrough) and way.name == "click-through"
    coded = attrs.evolve(config, auth=attrs.evolve(config.auth, method="access-code", codes=("x",)))
    (way,) = ways_for(coded)
    assert isinstance(way.authenticator, AccessCode)


def test_several_ways_in_side_by_side_keep_their_order_and_settings() -> None:
    config = make_config()
    ways = (WayIn("click-through", timeout=1800.0), WayIn("access-code", codes=("7",), timeout=7 * 86400.0))
    several = attrs.evolve(config, auth=attrs.evolve(config.auth, methods=ways))
    found = ways_for(several)
    assert [way.name for way in found] == ["click-through", "access-code"]
    assert [way.label for way in found] == ["Free access", "With an access code"]
    assert several.session_settings(found[1].settings)[0] == 7 * 86400.0
    voucher = attrs.evolve(config, auth=attrs.evolve(config.auth, method="voucher"))
    with pytest.raises(ValueError):
        ways_for(voucher)  # the voucher way needs the book's method


def test_attempt_limiter_slides_and_forgets() -> None:
    clock = Clock()
    limiter = AttemptLimiter(clock, max_attempts=2, window=60)
    mac = "02:00:00:00:00:0a"
    assert limiter.retry_after(mac) == 0
    limiter.record_failure(mac)
    clock.advance(20)
    assert limiter.retry_after(mac) == 0
    limiter.record_failure(mac)
    assert limiter.retry_after(mac) == 40
    clock.advance(40)
    assert limiter.retry_after(mac) == 0  # the first failure aged out
    limiter.record_failure(mac)
    assert limiter.retry_after(mac) == 20
    assert limiter.retry_after("02:00:00:00:00:0b") == 0
    limiter.clear(mac)
    assert limiter.retry_after(mac) == 0 and len(limiter) == 0


def test_attempt_limiter_memory_is_bounded_by_recent_devices() -> None:
    clock = Clock()
    limiter = AttemptLimiter(clock, max_attempts=5, window=60)
    for n in range(1500):
        limiter.record_failure(f"02:00:00:00:{n // 256:02x}:{n % 256:02x}")
    clock.advance(61)
    limiter.record_failure("02:00:00:00:ff:ff")
    limiter.record_failure("02:00:00:00:ff:fe")
    assert len(limiter) < 1024


# --- the global guessing budget ---


def guessers(count: int) -> list[str]:
    return [f"02:00:00:00:01:{n:02x}" for n in range(count)]


def test_the_budget_bounds_evaluations_whatever_the_number_of_macs() -> None:
    clock = Clock()
    budget = GuessingBudget(clock, max_attempts=30, window=60)
    granted: list[float] = []
    for _ in range(600):
        for mac in guessers(30):  # each of 30 devices tries every second
            if budget.take(mac) == 0:
                granted.append(clock.seconds())
        clock.advance(1)
    # In any 60 s, at most 30 codes are checked (not 30 devices x 5).
    assert max(sum(1 for t in granted if start <= t < start + 60) for start in range(540)) == 30
    assert len(granted) == 300


@pytest.mark.parametrize("count, windows", [(30, 2), (200, 8)])
def test_a_guest_with_the_right_code_gets_a_turn_among_many_guessers(count: int, windows: int) -> None:
    clock = Clock()
    budget = GuessingBudget(clock, max_attempts=30, window=60)
    waited = None
    for second in range(300 + 60 * windows):
        for mac in guessers(count):
            budget.take(mac)
        if second >= 300 and waited is None and budget.take("02:00:00:00:00:aa") == 0:
            waited = second - 300
        clock.advance(1)
    # The devices ahead of it, at 30 a minute: about count/30 windows, never locked out.
    assert waited is not None and waited <= 60 * windows
    print(f"{count} guessers: the right code got its turn after {waited} s")


def test_a_lone_guest_is_served_at_once_and_told_how_long_to_wait() -> None:
    clock = Clock()
    budget = GuessingBudget(clock, max_attempts=3, window=60)
    assert [budget.take("a") for _ in range(3)] == [0, 0, 0]
    clock.advance(10)
    # Attempts still in flight count: the fourth waits for the first to age out.
    assert budget.take("b") == 50
    clock.advance(50)
    assert budget.take("b") == 0


def test_waiting_devices_keep_their_order_until_they_stay_away() -> None:
    clock = Clock()
    budget = GuessingBudget(clock, max_attempts=1, window=60)
    assert budget.take("first") == 0
    budget.take("a")
    budget.take("b")
    clock.advance(60)
    assert budget.take("b") > 0  # "a" is ahead
    assert budget.take("a") == 0
    clock.advance(60)
    assert budget.take("b") == 0
    # One that stays away two windows loses its place to those who came back.
    budget.take("c")
    budget.take("d")
    clock.advance(120)
    assert budget.take("d") == 0


def test_the_line_is_bounded_and_an_empty_attempt_gives_its_unit_back() -> None:
    clock = Clock()
    budget = GuessingBudget(clock, max_attempts=1, window=60)
    budget.take("first")
    for n in range(MAX_WAITING + 100):
        budget.take(f"m{n}")
    assert budget.waiting == MAX_WAITING
    budget.give_back()
    assert budget.take("m0") == 0
