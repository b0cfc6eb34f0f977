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
from tests.lab.test_enforcement import PORTAL, curl, sign_in, status

SITE = f"http://{WEB_ADDRESS}/"


def wait_for_lease(client) -> None:
    # portald knows the lease once the portal page offers the form.
    wait_for(lambda: "csrf" in curl(client, *PORTAL[:-1], PORTAL[-1] + "/").stdout, 10, what="the lease")


def test_a_restart_rebuilds_the_kernel_set_from_the_store(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    phone, other = lab.client("c1"), lab.client("c2")
    phone.dhclient()
    other.dhclient()
    portal = start_portald(
        lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings={"firewall": {"on_stop": "remove"}}
    )
    table = ["nft", "list", "table", "inet", f"{lab.prefix}_portald"]
    for client in (phone, other):
        wait_for_lease(client)
    sign_in(phone)
    wait_for(lambda: status(phone, SITE) == "200", 5, what="the phone to get out")

    portal.stop()
    # on_stop: remove took the whole table away: nothing in the kernel remembers the phone.
    assert lab.gateway().run(table, check=False).returncode != 0

    portal.start()
    assert "restored 1 session(s)" in portal.log()
    assert phone.mac("eth0") in lab.gateway().run(table).stdout
    assert other.mac("eth0") not in lab.gateway().run(table).stdout
    assert status(phone, SITE) == "200"
    assert status(other, SITE) == "511"
    assert "Traceback" not in portal.log()


def test_idle_clients_are_cut_off_and_active_ones_are_not(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    busy, idle = lab.client("c1"), lab.client("c2")
    busy.dhclient()
    idle.dhclient()
    portal = start_portald(
        lab,
        lease_file=dhcp.lease_file,
        upstream=[net.dns],
        settings={"sessions": {"idle_timeout": "3s", "sample_interval": "500ms"}},
    )
    for client in (busy, idle):
        wait_for_lease(client)
        sign_in(client)
    for client in (busy, idle):
        wait_for(lambda c=client: status(c, SITE) == "200", 5, what="the phones to get out")

    # The busy phone browses every 0.3 s for 6 s (twice the idle timeout);
    # the idle one does nothing.
    deadline = time.monotonic() + 6
    answers = []
    while time.monotonic() < deadline:
        answers.append(status(busy, SITE))
        time.sleep(0.3)
    assert set(answers) == {"200"}, answers
    assert status(idle, SITE) == "511"
    assert status(busy, SITE) == "200"
    log = portal.log()
    assert f"deauthorized {idle.mac('eth0')}" in log and "idle" in log
    assert f"deauthorized {busy.mac('eth0')}" not in log
