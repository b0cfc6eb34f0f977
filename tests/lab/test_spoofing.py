"""
A captive device that takes a signed-in guest's address (static, after its
own lease) passes for nobody: its packets carry the wrong MAC for that
leased address, and the gateway drops them before portald's DNS, its web
pages or forwarding see them.  A device with an address nobody leased still
reaches the portal, which tells it it cannot sign in yet.
"""

from __future__ import annotations

import re

from tests.lab.daemon import start_portald
from tests.lab.internet import DNS_ADDRESS, WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, Client, wait_for
from tests.lab.test_enforcement import (
    PORTAL,
    curl,
    dig,
    sign_in,
    status,
    wait_for_enforcement,
    wait_for_leases,
)


def take_address(client: Client, address: str) -> None:
    """C{client} stops its DHCP client and uses C{address} statically."""
    assert client.dhclient_process is not None
    client.dhclient_process.stop()
    client.run(["ip", "addr", "flush", "dev", "eth0"])
    client.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    client.run(["ip", "route", "replace", "default", "via", GATEWAY_ADDRESS])


def test_a_device_with_a_signed_in_guests_address_gets_nothing_of_theirs(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    guest, thief = lab.client("c1"), lab.client("c2")
    guest.dhclient()
    thief.dhclient()
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    wait_for_leases(guest, thief)
    wait_for_enforcement(lab)
    sign_in(guest)
    wait_for(lambda: dig(guest, DNS_ADDRESS) == WEB_ADDRESS, 5, what="the guest's forwarded DNS")

    guests_address = guest.address()
    assert guests_address is not None
    take_address(thief, guests_address)
    # Before, portald took the thief for the guest: forwarded DNS (a tunnel
    # out of the walled garden) and the guest's own status page.
    for server in (DNS_ADDRESS, GATEWAY_ADDRESS):
        assert "timed out" in dig(thief, server)
    assert status(thief, *PORTAL[:-1], PORTAL[-1] + "/status") == "curl exit 28"
    assert status(thief, f"http://{WEB_ADDRESS}/") == "curl exit 28"
    dropped = lab.gateway().run(["nft", "list", "chain", "inet", f"{lab.prefix}_portald", "spoofing"]).stdout
    counted = re.search(r"@leased4 counter packets (\d+)", dropped)
    assert counted and int(counted.group(1)) > 0, dropped

    # An address nobody leased: the portal answers, and says why it cannot sign in.
    take_address(thief, "192.0.2.250")
    page = curl(thief, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    assert "csrf" not in page and page, page
    assert "Traceback" not in portal.log()
