"""
The gateway itself, seen from the guest Wi-Fi: guests reach DHCP, portald's
DNS and web ports and ping, and what firewall.gateway_services lists;
nothing else that listens on any of the gateway's addresses answers them,
captive or signed in.
"""

from __future__ import annotations

import sys

import yaml

from tests.lab.daemon import Portald, lab_config, start_portald
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, GATEWAY_UPLINK_ADDRESS, wait_for
from tests.lab.test_enforcement import sign_in, status, wait_for_enforcement, wait_for_leases

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
    wait_for_leases(captive, signed_in)
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


def no_packet_gets_through(client, address: str) -> bool:
    """Five pings, a second at most each: True if not one came back."""
    result = client.run(["ping", "-c", "5", "-i", "0.2", "-W", "1", address], check=False)
    return " 100% packet loss" in result.stdout


def every_packet_gets_through(client, address: str) -> bool:
    result = client.run(["ping", "-c", "5", "-i", "0.2", "-W", "1", address], check=False)
    return " 0% packet loss" in result.stdout


def close_by_hand(lab, config_path) -> str:
    """What the unit's ExecStartPre runs: ``portald-firewall close``."""
    command = [sys.executable, "-m", "portald.cli.firewall", "close", "--config", str(config_path)]
    return lab.gateway().run(command).stdout


def test_the_network_stays_closed_before_portald_starts_and_after_it_dies(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    phone, other = lab.client("c1"), lab.client("c2")
    phone.dhclient()
    other.dhclient()
    config = lab_config(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings={})
    path = lab.tmp / "portald.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # No table yet: the gateway forwards anything (what a boot looked like).
    assert every_packet_gets_through(other, WEB_ADDRESS)

    # --- at boot, before portald: closed, nobody signed in yet ---
    assert "loaded closed, 0 guest(s) signed in" in close_by_hand(lab, path)
    assert no_packet_gets_through(phone, WEB_ADDRESS) and no_packet_gets_through(other, WEB_ADDRESS)

    portal = Portald(lab, path)
    portal.start()
    wait_for_leases(phone, other)
    sign_in(phone)
    wait_for(lambda: every_packet_gets_through(phone, WEB_ADDRESS), 10, what="the phone to get out")

    # --- portald dies (a crash, the OOM killer): the table stays, closed ---
    assert portal.process is not None
    portal.process.popen.kill()
    portal.process.popen.wait(10)
    assert no_packet_gets_through(other, WEB_ADDRESS)
    assert every_packet_gets_through(phone, WEB_ADDRESS)

    # --- a reboot: the kernel forgets, the database remembers ---
    lab.gateway().run(["nft", "delete", "table", "inet", f"{lab.prefix}_portald"])
    assert "loaded closed, 1 guest(s) signed in" in close_by_hand(lab, path)
    assert every_packet_gets_through(phone, WEB_ADDRESS)
    assert no_packet_gets_through(other, WEB_ADDRESS)
    # Run again (a restart of the unit): what is there is left alone.
    assert "in place already" in close_by_hand(lab, path)
