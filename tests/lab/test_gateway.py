"""
The gateway itself, seen from the guest Wi-Fi: guests reach DHCP, portald's
DNS and web ports and ping, and what firewall.gateway_services lists;
nothing else that listens on any of the gateway's addresses answers them,
captive or signed in.
"""

from __future__ import annotations

import sys

import yaml

from tests.lab.daemon import start_portald
from tests.lab.internet import start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, GATEWAY_UPLINK_ADDRESS, wait_for
from tests.lab.test_enforcement import PORTAL, curl, sign_in, status, wait_for_enforcement

# A staff service on the gateway (an admin page, SSH): any address, a high port.
STAFF_PORT = 8022


def test_services_on_the_gateway_answer_guests_only_when_listed(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    captive, signed_in = lab.client("c1"), lab.client("c2")
    captive.dhclient()
    signed_in.dhclient()
    server = lab.gateway().spawn(
        [sys.executable, "-m", "http.server", str(STAFF_PORT), "--bind", "0.0.0.0"], name="staff"
    )
    wait_for(lambda: "Serving HTTP" in server.log(), 10, what="the staff service")
    staff = [f"http://{address}:{STAFF_PORT}/" for address in (GATEWAY_ADDRESS, GATEWAY_UPLINK_ADDRESS)]
    # Without portald, the gateway answers everyone: what the input chain changes.
    assert [status(captive, url) for url in staff] == ["200", "200"]

    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    for client in (captive, signed_in):
        wait_for(
            lambda c=client: "csrf" in curl(c, *PORTAL[:-1], PORTAL[-1] + "/").stdout, 10, what="the lease"
        )
    wait_for_enforcement(lab)
    sign_in(signed_in)
    for client in (captive, signed_in):
        # Dropped, not refused: curl's 28 is its timeout.
        assert [status(client, url) for url in staff] == ["curl exit 28", "curl exit 28"], client
        assert client.run(["ping", "-c", "1", "-W", "1", GATEWAY_ADDRESS], check=False).returncode == 0
    # The gateway's own staff-side traffic is not the guests': it still reaches it.
    assert status(lab.internet(), staff[1]) == "200"

    # Listed: reachable again, by everyone on the guest side.
    portal.stop()
    config = yaml.safe_load(portal.config_path.read_text())
    config["firewall"]["gateway_services"] = [f"tcp/{STAFF_PORT}"]
    portal.config_path.write_text(yaml.safe_dump(config))
    portal.start()
    wait_for(lambda: status(captive, staff[0]) == "200", 10, what="the listed service")
    assert status(captive, staff[1]) == "200" and status(signed_in, staff[0]) == "200"
    assert "Traceback" not in portal.log()
