"""
Download-counter ownership on its own: plain values in, plain answers out
(no reactor, no nft).
"""

from __future__ import annotations

import ipaddress

from portald.firewall.counters import CounterOwnership, Move, SignIn, SignOut
from portald.firewall.ruleset import Counter
from portald.table import Session

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
ip = ipaddress.ip_address


def session(mac: str, address: str, started: float = 0.0) -> Session:
    return Session(mac, address, "click-through", started=started, expires=None)


def sent(*macs: str) -> dict[str, Counter]:
    return {mac: Counter(1, 1) for mac in macs}


def test_a_sign_in_owns_its_address() -> None:
    counters = CounterOwnership()
    assert counters.signed_in(session(MAC1, "192.0.2.10")) == SignIn(counted=ip("192.0.2.10"), forget=None)
    downloads = {"192.0.2.10": Counter(5, 5000)}
    assert counters.readings(sent(MAC1), downloads) == {MAC1: (1, 5000)}


def test_a_device_not_in_the_kernel_yet_is_left_out() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    assert counters.readings({}, {"192.0.2.10": Counter(5, 5000)}) == {}


def test_a_sign_in_without_an_address_counts_nowhere() -> None:
    counters = CounterOwnership()
    assert counters.signed_in(session(MAC1, "")) == SignIn(counted=None, forget=None)
    assert counters.readings(sent(MAC1), {}) == {MAC1: (1, 0)}


def test_the_latest_sign_in_at_an_address_owns_it_and_the_other_keeps_it_on_sign_out() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    counters.signed_in(session(MAC2, "192.0.2.10"))
    downloads = {"192.0.2.10": Counter(5, 5000)}
    assert counters.readings(sent(MAC1, MAC2), downloads) == {MAC1: (1, 0), MAC2: (1, 5000)}
    # MAC1's sign-out leaves MAC2's counter alone; MAC2's removes it.
    assert counters.signed_out(session(MAC1, "192.0.2.10")) == SignOut("192.0.2.10", None)
    assert counters.signed_out(session(MAC2, "192.0.2.10")) == SignOut("192.0.2.10", ip("192.0.2.10"))


def test_signing_in_again_elsewhere_forgets_the_old_counter() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    assert counters.signed_in(session(MAC1, "192.0.2.11")).forget == ip("192.0.2.10")
    # ... unless another device owns it by now.
    counters.signed_in(session(MAC2, "192.0.2.11"))
    assert counters.signed_in(session(MAC1, "192.0.2.12")).forget is None


def test_a_move_carries_the_last_reading_and_goes_back_to_the_sign_in_address() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    counters.readings(sent(MAC1), {"192.0.2.10": Counter(40, 4000)})
    assert counters.moved(lambda mac: frozenset({"192.0.2.33"})) == [
        Move(MAC1, "192.0.2.10", "192.0.2.33", ip("192.0.2.33"), Counter(40, 4000), forget=ip("192.0.2.10"))
    ]
    # Counted at the new address from now on; still there: nothing to do.
    assert counters.readings(sent(MAC1), {"192.0.2.33": Counter(45, 4500)}) == {MAC1: (1, 4500)}
    assert counters.moved(lambda mac: frozenset({"192.0.2.33"})) == []
    back = counters.moved(lambda mac: frozenset({"192.0.2.10", "192.0.2.50"}))
    assert [(m.old, m.new, m.start) for m in back] == [("192.0.2.33", "192.0.2.10", Counter(45, 4500))]
    assert counters.signed_out(session(MAC1, "192.0.2.10")) == SignOut("192.0.2.10", ip("192.0.2.10"))


def test_a_move_keeps_the_address_family_when_it_can() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    (move,) = counters.moved(lambda mac: frozenset({"2001:db8::1", "192.0.2.99", "192.0.2.33"}))
    assert move.new == "192.0.2.33"


def test_a_device_whose_lease_ended_is_left_where_it_is() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    assert counters.moved(lambda mac: frozenset()) == []
    assert counters.signed_out(session(MAC1, "192.0.2.10")).counter == ip("192.0.2.10")


def test_a_move_signed_out_frees_the_new_address() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    counters.moved(lambda mac: frozenset({"192.0.2.33"}))
    assert counters.signed_out(session(MAC1, "192.0.2.10")) == SignOut("192.0.2.33", ip("192.0.2.33"))


def test_a_reading_never_goes_down_while_a_move_is_on_its_way() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    assert counters.readings(sent(MAC1), {"192.0.2.10": Counter(40, 4000)}) == {MAC1: (1, 4000)}
    counters.moved(lambda mac: frozenset({"192.0.2.33"}))
    # The new counter is not in the kernel yet: the last reading, not 0.
    assert counters.readings(sent(MAC1), {"192.0.2.10": Counter(41, 4100)}) == {MAC1: (1, 4000)}


def test_moving_onto_an_address_another_device_still_names_makes_it_the_movers() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.20", started=1))
    counters.signed_in(session(MAC2, "192.0.2.10", started=2))
    counters.moved(lambda mac: frozenset({"192.0.2.10"}) if mac == MAC1 else frozenset())
    downloads = {"192.0.2.10": Counter(50, 5000), "192.0.2.20": Counter(1, 100)}
    assert counters.readings(sent(MAC1, MAC2), downloads) == {MAC1: (1, 5000), MAC2: (1, 0)}


def test_a_whole_load_names_each_address_once_the_latest_session_owning_an_unowned_one() -> None:
    counters = CounterOwnership()
    older, newer = session(MAC1, "192.0.2.10", started=1), session(MAC2, "192.0.2.10", started=2)
    # Restored sessions, never signed in through this backend: nobody owns .10 yet.
    assert counters.counted_for_load([older, newer]) == [(older, None), (newer, ip("192.0.2.10"))]
    counters.loaded([older, newer])
    downloads = {"192.0.2.10": Counter(7, 700)}
    assert counters.readings(sent(MAC1, MAC2), downloads) == {MAC1: (1, 0), MAC2: (1, 700)}


def test_a_whole_load_forgets_owners_that_are_gone() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10", started=1))
    other = session(MAC2, "192.0.2.10", started=0)
    assert counters.counted_for_load([other]) == [(other, ip("192.0.2.10"))]


def test_after_a_whole_load_the_live_sessions_are_read() -> None:
    counters = CounterOwnership()
    login = session(MAC1, "192.0.2.10")
    counters.loaded([login])
    assert counters.readings(sent(MAC1), {"192.0.2.10": Counter(1, 100)}) == {MAC1: (1, 100)}


# --- a device's other IPv6 addresses ---

A6, B6, C6 = "2001:db8:1::a", "2001:db8:1::b", "2001:db8:1::c"


def test_every_ipv6_address_a_device_sent_from_adds_to_its_downloads() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    counters.signed_in(session(MAC2, "192.0.2.11"))
    seen6 = {A6: MAC1, B6: MAC1, C6: MAC2}
    first = {"192.0.2.10": Counter(1, 100), A6: Counter(1, 700)}
    assert counters.readings(sent(MAC1, MAC2), first, seen6) == {MAC1: (1, 800), MAC2: (1, 0)}
    later = {"192.0.2.10": Counter(2, 200), A6: Counter(2, 1700), B6: Counter(1, 300), C6: Counter(1, 50)}
    assert counters.readings(sent(MAC1, MAC2), later, seen6) == {MAC1: (1, 2200), MAC2: (1, 50)}


def test_an_ipv6_reading_never_goes_down() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, "192.0.2.10"))
    seen6 = {A6: MAC1}
    assert counters.readings(sent(MAC1), {A6: Counter(1, 0)}, seen6) == {MAC1: (1, 0)}
    assert counters.readings(sent(MAC1), {A6: Counter(1, 900)}, seen6) == {MAC1: (1, 900)}
    # The address stopped being used (gone from seen6 and its counter): it keeps its 900.
    assert counters.readings(sent(MAC1), {}, {}) == {MAC1: (1, 900)}
    # The kernel forgot the address and counts it again from 0.
    assert counters.readings(sent(MAC1), {A6: Counter(1, 40)}, seen6) == {MAC1: (1, 940)}


def test_a_new_session_reads_its_ipv6_afresh_and_its_own_address_once() -> None:
    counters = CounterOwnership()
    counters.signed_in(session(MAC1, A6))  # signed in over IPv6
    seen6 = {A6: MAC1, B6: MAC1}
    got = counters.readings(sent(MAC1), {A6: Counter(1, 500), B6: Counter(1, 110)}, seen6)
    assert got == {MAC1: (1, 610)}  # A6 counted as its sign-in address only
    counters.signed_out(session(MAC1, A6))
    counters.signed_in(session(MAC1, "192.0.2.10"))
    # The kernel counts B6 afresh once the device is back (its sign-out forgot it).
    assert counters.readings(sent(MAC1), {B6: Counter(1, 30)}, seen6) == {MAC1: (1, 30)}
