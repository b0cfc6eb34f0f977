"""
Sessions with real nftables: what the store restores reaches the kernel,
and idle clients are cut off while active ones are not.

    restore   with firewall.on_stop: remove, stopping portald takes its nft
              table away; starting it again rebuilds the authorized set from
              the session database alone, and the phone is let through again
    idle      two phones sign in; the one that keeps browsing stays, the
              idle one is cut off after sessions.idle_timeout
"""

from __future__ import annotations

import time

from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import wait_for
from tests.lab.test_enforcement import sign_in, status, wait_for_leases

SITE = f"http://{WEB_ADDRESS}/"


def two_phones_and_portald(lab, settings: dict):
    """Two phones with real leases, and portald knowing both."""
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    phones = lab.client("c1"), lab.client("c2")
    for phone in phones:
        phone.dhclient()
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    wait_for_leases(*phones)
    return phones, portal


def test_a_restart_rebuilds_the_kernel_set_from_the_store(lab) -> None:
    (phone, other), portal = two_phones_and_portald(lab, {"firewall": {"on_stop": "remove"}})
    table = ["nft", "list", "table", "inet", f"{lab.prefix}_portald"]
    sign_in(phone)
    wait_for(lambda: status(phone, SITE) == "200", 5, what="the phone to get out")

    portal.stop()
    # on_stop: remove took the whole table away: nothing in the kernel remembers the phone.
    assert lab.gateway().run(table, check=False).returncode != 0

    portal.start()
    assert "restored 1 session(s)" in portal.log()
    # The firewall applies the restored sessions as its first batch.
    authorized = ["nft", "list", "set", "inet", f"{lab.prefix}_portald", "authorized"]
    wait_for(
        lambda: phone.mac("eth0") in lab.gateway().run(authorized, check=False).stdout,
        10,
        what="the restored set",
    )
    assert other.mac("eth0") not in lab.gateway().run(authorized).stdout
    assert status(phone, SITE) == "200"
    assert status(other, SITE) == "511"
    assert "Traceback" not in portal.log()


def test_idle_clients_are_cut_off_and_active_ones_are_not(lab) -> None:
    (busy, idle), portal = two_phones_and_portald(
        lab, {"sessions": {"idle_timeout": "6s", "sample_interval": "500ms"}}
    )
    for client in (busy, idle):
        sign_in(client)
    for client in (busy, idle):
        wait_for(lambda c=client: status(c, SITE) == "200", 5, what="the phones to get out")

    signed_in = time.monotonic()

    # The busy phone browses every 0.3 s until the idle one is cut off
    # (bounded: 30 s, on a loaded machine sampling the counters may lag).
    # The idle phone is watched through portald's log: asking it would be
    # traffic, and keep it active.
    ended = f"deauthorized {idle.mac('eth0')}"
    busy_answers = []
    deadline = signed_in + 30
    while ended not in portal.log() and time.monotonic() < deadline:
        busy_answers.append(status(busy, SITE))
        time.sleep(0.3)
    cut_off_after = time.monotonic() - signed_in
    # A connection opened just as its flows are flushed may lose its first SYN: a few seconds' grace.
    wait_for(
        lambda: status(idle, SITE) == "511",
        10,
        what=f"the idle phone, deauthorized after {cut_off_after:.1f} s, to meet the portal",
    )
    assert cut_off_after >= 6, "cut off before its idle timeout"
    assert set(busy_answers) == {"200"}, busy_answers
    assert status(busy, SITE) == "200"
    log = portal.log()
    assert f"{ended} " in log and "idle" in log
    assert f"deauthorized {busy.mac('eth0')}" not in log
