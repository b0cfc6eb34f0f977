"""
portald's DNS in the lab, end to end with the real daemon: a client holding a
real DHCP lease asks the gateway with dig, signs in with the portal's form,
and its very next query gets the upstream's answer (the lab internet's
dnsmasq at 203.0.113.53).
"""

from __future__ import annotations

import re
import time

from tests.lab.daemon import start_portald
from tests.lab.guest import curl, hidden
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, GATEWAY_UPLINK_ADDRESS, wait_for


def dig(client, name: str, *options: str, qtype: str = "A") -> str:
    argv = ["dig", "+time=2", "+tries=1", f"@{GATEWAY_ADDRESS}", name, qtype, *options]
    return client.run(argv, check=True).stdout


def answer(client, name: str, *options: str, qtype: str = "A") -> list[str]:
    return dig(client, name, "+noall", "+answer", *options, qtype=qtype).split()


def test_dig_from_a_leased_client_before_and_after_signing_in(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    settings = {"dns": {"walled_garden": ["news.example.test"]}}
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    phone = lab.client("c1")
    phone.dhclient()
    # portald has read the lease once the portal offers this client the form.
    wait_for(
        lambda: 'name="csrf"' in curl(phone, "http://portal.example/")[2], 10, what="portald to see the lease"
    )

    # Before sign-in: the portal's address with the short TTL, over UDP and TCP.
    assert answer(phone, "example.test") == ["example.test.", "5", "IN", "A", GATEWAY_ADDRESS]
    assert answer(phone, "example.test", "+tcp") == ["example.test.", "5", "IN", "A", GATEWAY_ADDRESS]
    assert "status: NOERROR" in dig(phone, "example.test", qtype="AAAA")
    assert answer(phone, "example.test", qtype="AAAA") == []
    assert "status: NXDOMAIN" in dig(phone, "use-application-dns.net")
    # The walled garden: the real answer before sign-in, and the firewall
    # learns the address to let through.
    assert answer(phone, "news.example.test") == ["news.example.test.", "0", "IN", "A", WEB_ADDRESS]
    walled = ["nft", "list", "set", "inet", f"{lab.prefix}_portald", "walled_garden_dns4"]
    wait_for(lambda: WEB_ADDRESS in lab.gateway().run(walled).stdout, 5, what="the firewall to learn it")
    # The client's own resolver (from DHCP) is the gateway: plain getaddrinfo agrees.
    assert phone.run(["getent", "ahostsv4", "anything.example"]).stdout.split()[0] == GATEWAY_ADDRESS

    # Sign in as a browser does.
    status, _, page = curl(phone, "http://portal.example/")
    form = ["-d", f"csrf={hidden(page, 'csrf')}", "-d", "accept=yes"]
    status, _, _ = curl(phone, "http://portal.example/login", *form)
    assert status == 200 and f"authorized {phone.mac_address}" in portal.log(), portal.log()
    signed_in = time.monotonic()

    # The very next query: the upstream's real answer (its TTL is 0: passed on, not cached).
    assert answer(phone, "example.test") == ["example.test.", "0", "IN", "A", WEB_ADDRESS]
    first_answer = time.monotonic() - signed_in
    assert answer(phone, "www.example.test", "+tcp") == ["www.example.test.", "0", "IN", "A", WEB_ADDRESS]
    assert "status: NXDOMAIN" in dig(phone, "not-a-test-name.invalid")
    assert "status: NXDOMAIN" in dig(phone, "use-application-dns.net")
    assert "status: NOERROR" in dig(phone, "portal.example")
    assert answer(phone, "portal.example")[-1] == GATEWAY_ADDRESS
    upstream = net.dns_process.log()
    # Asked in random letter case (0x20): the upstream's log shows it so.
    assert re.search(rf"query\[A\] (?i:example\.test) from {GATEWAY_UPLINK_ADDRESS}", upstream), upstream
    upstream = upstream.lower()
    assert "use-application-dns.net" not in upstream and "portal.example" not in upstream

    # Another device on the LAN, not signed in: still the portal.
    other = lab.client("c2", address="192.0.2.200")
    assert answer(other, "example.test") == ["example.test.", "5", "IN", "A", GATEWAY_ADDRESS]
    assert "Traceback" not in portal.log()
    print(f"lab: sign-in to first forwarded DNS answer {first_answer * 1000:.0f} ms")
