"""
portald as guests meet it: the real daemon (twistd, nftables) in the lab's
gateway, dnsmasq handing real leases to dhclient, the lab's internet with the
example sites, every OS probe and an authoritative DNS.  Each scenario is one
test and narrates what each guest asked and got (``pytest -s`` shows it;
``make lab`` runs scenario 1 that way).

Guests use their own resolver (the portal's DNS, from DHCP) unless a step
says otherwise, as a phone would.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from tests.lab.daemon import Portald, start_portald
from tests.lab.guest import PORTAL_URL, Guest, narrate
from tests.lab.internet import DNS_ADDRESS, WEB_ADDRESS, Internet, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, DHCPServer, Lab, wait_for

UDP_LOGGER = Path(__file__).parent.parent / "firewall_servers.py"


@attrs.frozen
class World:
    dhcp: DHCPServer
    net: Internet
    portal: Portald


def start_world(lab: Lab, settings: Mapping[str, Mapping[str, Any]] | None = None, **dhcp: Any) -> World:
    narrate("the lab: gateway (portald, dnsmasq DHCP, nftables), internet (example sites, probes, DNS)")
    dhcp_server = lab.dnsmasq_dhcp(**dhcp)
    net = start_internet(lab)
    portal = start_portald(lab, lease_file=dhcp_server.lease_file, upstream=[net.dns], settings=settings)
    return World(dhcp_server, net, portal)


def arrive(world: World, guest: Guest) -> str:
    """The guest joins, and portald's lease watcher maps its address to its MAC."""
    address = guest.join()
    wait_for(
        lambda: f"lease {address} -> {guest.mac}" in world.portal.log(), 10, what="portald to read the lease"
    )
    guest.say(f"portald's lease watcher: {address} is {guest.mac}")
    return address


def assert_clean(world: World) -> None:
    assert "Traceback" not in world.portal.log(), world.portal.log()


def test_scenario1_a_new_guest_signs_in_and_is_online(lab) -> None:
    world = start_world(lab)
    phone = Guest(lab.client("c1"), "phone")
    narrate("a new guest joins")
    arrive(world, phone)

    narrate("before signing in: every name is the portal, web gets the 511, probes get a redirect")
    for name in ("example.test", "anything.invalid"):
        assert phone.lookup(name) == [GATEWAY_ADDRESS]
    page = phone.get("http://example.test/")
    assert page.status == 511 and "<form" not in page.body
    assert f'href="{PORTAL_URL}?next=' in page.body
    link = page.body.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    phone.assert_captive()

    narrate("the guest follows the 511's link and accepts the terms, as a browser posts the form")
    signed_in = phone.sign_in(landing=link, accept="yes")
    assert signed_in.status == 303 and signed_in.headers["location"] == "http://example.test/"
    assert f"authorized {phone.mac}" in world.portal.log()

    narrate("after signing in: each probe gets the real online answer, DNS is real, the site loads")
    phone.assert_online()
    assert phone.lookup("example.test") == [WEB_ADDRESS]
    site = phone.get("http://example.test/")
    assert site.status == 200 and "EXAMPLE-SITE example.test/" in site.body
    tls = phone.get("https://example.test/", "--cacert", str(world.net.ca_certificate))
    assert tls.status == 200 and "EXAMPLE-SITE example.test/" in tls.body
    assert_clean(world)


def test_scenario2_access_code_wrong_then_right(lab) -> None:
    world = start_world(lab, {"auth": {"method": "access-code", "codes": ["Lab-2026"]}})
    phone = Guest(lab.client("c1"), "phone")
    arrive(world, phone)

    narrate("a wrong code is refused with a message; the guest stays captive")
    refused = phone.sign_in(code="0000")
    assert refused.status == 403 and "That code is not valid" in refused.body
    phone.say("the page says: That code is not valid. Check it and try again.")
    assert phone.get("http://example.test/").status == 511

    narrate("the right code, typed on a phone (other case, spaces around it), works")
    accepted = phone.sign_in(code=" lab-2026 ")
    assert accepted.status == 200, accepted
    assert f"authorized {phone.mac}" in world.portal.log() and "by access-code" in world.portal.log()
    phone.assert_online()
    assert "EXAMPLE-SITE" in phone.get("http://example.test/").body
    assert_clean(world)


def test_scenario3_two_guests_see_only_their_own_state(lab) -> None:
    world = start_world(lab)
    phone, laptop = Guest(lab.client("c1"), "phone"), Guest(lab.client("c2"), "laptop")
    arrive(world, phone)
    arrive(world, laptop)

    narrate("the phone signs in; the laptop does not")
    assert phone.sign_in(accept="yes").status == 200
    # In turns, the same names: a DNS answer cached for the phone, or its
    # connections to the same address, must not reach the laptop.
    for _ in range(2):
        assert phone.lookup("example.test") == [WEB_ADDRESS]
        assert laptop.lookup("example.test") == [GATEWAY_ADDRESS]
        assert "EXAMPLE-SITE" in phone.get("http://example.test/").body
        assert laptop.get("http://example.test/").status == 511
        assert phone.get("http://example.test/", to=WEB_ADDRESS).status == 200
        assert laptop.get("http://example.test/", to=WEB_ADDRESS).status == 511
    phone.assert_online()
    laptop.assert_captive()
    assert laptop.get("https://example.test/", to=WEB_ADDRESS).curl_exit == 7

    narrate("each sees only its own session")
    assert phone.mac in phone.get(PORTAL_URL + "status").body
    laptop_status = laptop.get(PORTAL_URL + "status")
    assert phone.mac not in laptop_status.body and "Time left" not in laptop_status.body
    assert_clean(world)


def test_scenario4_a_new_address_keeps_the_sign_in(lab) -> None:
    hosts = lab.tmp / "dhcp-hosts"
    hosts.write_text("")
    world = start_world(lab, extra=[f"--dhcp-hostsfile={hosts}"])
    phone = Guest(lab.client("c1"), "phone")
    first = arrive(world, phone)
    assert phone.sign_in(accept="yes").status == 200
    phone.assert_online()

    narrate("the DHCP server now reserves another address for the phone; it releases and leases again")
    second = "192.0.2.177"
    hosts.write_text(f"{phone.mac},{second}\n")
    world.dhcp.process.popen.send_signal(signal.SIGHUP)  # dnsmasq re-reads its hosts file
    phone.client.release()
    phone.say(f"released {first}")
    assert arrive(world, phone) == second != first

    narrate("still signed in, by its MAC: no portal, the same session")
    phone.assert_online()
    assert phone.lookup("example.test") == [WEB_ADDRESS]
    assert "EXAMPLE-SITE" in phone.get("http://example.test/").body
    assert world.portal.log().count(f"authorized {phone.mac}") == 1
    # Its downloads are counted at the new address (for its quota).
    listing = ["nft", "list", "set", "inet", f"{lab.prefix}_portald", "bytes_to_client4"]

    def counted_at_second() -> bool:
        counters = lab.gateway().run(listing).stdout
        return second in counters and first not in counters

    wait_for(counted_at_second, 5, what="the kernel to count the phone at its new address")
    assert f"moved from {first} to {second}" in world.portal.log()
    phone.say(f"counted at {second} now, in the kernel's bytes_to_client4")
    assert_clean(world)


def test_scenario5_sign_out_and_expiry_cut_the_guest_off(lab) -> None:
    world = start_world(lab, {"sessions": {"timeout": "6s"}})
    phone = Guest(lab.client("c1"), "phone")
    arrive(world, phone)

    narrate("signed in, then signs out from the status page: cut off at once")
    assert phone.sign_in(accept="yes").status == 200
    assert phone.get("http://example.test/").status == 200
    assert phone.sign_out().status == 200
    assert re.search(rf"deauthorized {phone.mac} \(\S+\): logout", world.portal.log())
    phone.assert_captive()
    assert phone.get("http://example.test/", to=WEB_ADDRESS).status == 511

    narrate("signed in again; the 6-second session runs out")
    signed_in = time.monotonic()
    assert phone.sign_in(accept="yes").status == 200
    assert phone.get("http://example.test/").status == 200
    wait_for(
        lambda: phone.get("http://example.test/", to=WEB_ADDRESS, quiet=True).status == 511,
        20,
        interval=0.5,
        what="the session to end",
    )
    phone.say(f"cut off {time.monotonic() - signed_in:.1f}s after signing in")
    assert re.search(rf"deauthorized {phone.mac} \(\S+\): expired", world.portal.log())
    phone.assert_captive()
    assert phone.lookup("example.test") == [GATEWAY_ADDRESS]
    assert_clean(world)


def test_scenario6_a_restart_keeps_who_is_signed_in(lab) -> None:
    world = start_world(lab)
    phone, laptop = Guest(lab.client("c1"), "phone"), Guest(lab.client("c2"), "laptop")
    arrive(world, phone)
    arrive(world, laptop)
    assert phone.sign_in(accept="yes").status == 200

    narrate("portald restarts (twistd stopped and started, same configuration and database)")
    world.portal.restart()
    assert "restored 1 session(s)" in world.portal.log(), world.portal.log()
    print("  [gateway] portald: restored 1 session(s)", flush=True)

    narrate("afterwards: the phone is still online, the laptop still captive")
    phone.assert_online()
    assert "EXAMPLE-SITE" in phone.get("http://example.test/").body
    laptop.assert_captive()
    assert laptop.get("http://example.test/").status == 511
    assert_clean(world)


def connect(guest: Guest, address: str, port: int) -> str:
    """A TCP connection attempt from the guest, as an app would: "refused", "timeout" or "connected"."""
    script = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        f"try: s.connect(('{address}', {port})); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except (socket.timeout, OSError) as e: print('timeout', e)\n"
    )
    outcome = guest.client.run([sys.executable, "-c", script], timeout=10).stdout.strip()
    guest.say(f"TCP {address}:{port}: {outcome}")
    return outcome


def send_udp(guest: Guest, address: str, port: int, payload: bytes) -> None:
    script = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto({payload!r}, ('{address}', {port}))"
    guest.client.run([sys.executable, "-c", script])


def test_scenario7_hard_coded_resolvers_and_encrypted_dns_meet_the_portal(lab) -> None:
    world = start_world(lab)
    quic_log, ready = lab.tmp / "quic.log", lab.tmp / "quic.ready"
    lab.internet().spawn(
        [sys.executable, str(UDP_LOGGER), "udp-log", WEB_ADDRESS, "443", str(quic_log), str(ready)],
        name="quic",
    )
    dot_ready = lab.tmp / "dot.ready"
    # A listener on the resolver's DNS-over-TLS port: a refusal can only be the gateway's.
    lab.internet().spawn(
        [sys.executable, str(UDP_LOGGER), "http", DNS_ADDRESS, "853", "dot", str(dot_ready)], name="dot"
    )
    wait_for(lambda: ready.exists() and dot_ready.exists(), 10, what="the QUIC and DoT listeners")
    phone = Guest(lab.client("c1"), "phone")
    arrive(world, phone)

    narrate("a resolver hard-coded in the phone: portald answers in its place")
    assert phone.lookup("example.test", server=DNS_ADDRESS) == [GATEWAY_ADDRESS]
    assert phone.lookup("example.test", server="198.51.100.99") == [GATEWAY_ADDRESS]
    phone.client.resolv_conf.write_text(f"nameserver {DNS_ADDRESS}\n")
    phone.say(f"its resolv.conf now says nameserver {DNS_ADDRESS}")
    assert phone.get("http://example.test/").status == 511

    narrate("DNS-over-TLS, DNS-over-HTTPS, HTTPS: refused at once (never intercepted, never through)")
    assert connect(phone, DNS_ADDRESS, 853) == "refused"
    doh = f"https://{WEB_ADDRESS}/dns-query?dns=AAABAAABAAAAAAAAB2V4YW1wbGUEdGVzdAAAAQAB"
    assert phone.get(doh).curl_exit == 7
    assert phone.get("https://example.test/", to=WEB_ADDRESS).curl_exit == 7

    narrate("QUIC (UDP 443): dropped, so browsers fall back to TCP")
    send_udp(phone, WEB_ADDRESS, 443, b"quic?")
    # The same datagram from the signed-in phone arrives: the check can see one.
    assert phone.sign_in(accept="yes").status == 200
    assert not quic_log.exists()
    phone.say("sent a QUIC datagram before signing in: it never arrived")
    send_udp(phone, WEB_ADDRESS, 443, b"quic!")
    wait_for(quic_log.exists, 5, what="the signed-in phone's datagram")
    assert quic_log.read_bytes() == b"quic!\n"
    phone.say("after signing in, its QUIC datagram arrived")
    narrate("and the same servers were there all along: signed in, the phone reaches them")
    assert connect(phone, DNS_ADDRESS, 853) == "connected"
    assert phone.get(doh, "--cacert", str(world.net.ca_certificate)).status == 200
    assert_clean(world)
