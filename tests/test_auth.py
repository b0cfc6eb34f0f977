"""Sign-in methods behind IAuthenticator, and the per-device attempt limit."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from portald.auth.interface import AuthResult, Credentials, IAuthenticator
from portald.auth.limits import AttemptLimiter
from portald.auth.methods import AccessCode, ClickThrough, authenticator_for

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
    assert isinstance(authenticator_for(config), ClickThrough)
    coded = attrs.evolve(config, auth=attrs.evolve(config.auth, method="access-code", codes=("x",)))
    assert isinstance(authenticator_for(coded), AccessCode)


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
