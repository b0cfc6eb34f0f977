"""
IPv6 in a dual-stack lab: dnsmasq sends router advertisements on the LAN
(SLAAC, with privacy addresses on the phones), and the internet's web server
answers on IPv6 too.  A guest never reaches the internet over IPv6 before
signing in; once signed in (by MAC), every one of its IPv6 addresses gets
out, its uploads counted by MAC; after signing out, none does.
"""

from __future__ import annotations

import re
import sys

from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, Internet, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, LAN, Client, DHCPServer, wait_for
from tests.lab.test_enforcement import (
    curl,
    form_token,
    sign_in,
    sign_out,
    status,
    wait_for_enforcement,
    wait_for_leases,
)

LAN6 = "2001:db8:1::"
GATEWAY6 = "2001:db8:1::1"
GATEWAY_UPLINK6 = "2001:db8:2::1"
INTERNET_UPLINK6 = "2001:db8:2::2"
WEB6 = "2001:db8:3::10"


def dual_stack(lab) -> None:
    """IPv6 on the LAN, the uplink and the internet's web host, routed without NAT."""
    gateway, internet = lab.gateway(), lab.internet()
    gateway.run(["ip", "addr", "add", f"{GATEWAY6}/64", "dev", "lan", "nodad"])
    gateway.run(["ip", "addr", "add", f"{GATEWAY_UPLINK6}/64", "dev", "wan", "nodad"])
    gateway.sysctl("net.ipv6.conf.all.forwarding", "1")
    gateway.run(["ip", "-6", "route", "add", "default", "via", INTERNET_UPLINK6])
    internet.run(["ip", "addr", "add", f"{INTERNET_UPLINK6}/64", "dev", "eth0", "nodad"])
    internet.run(["ip", "addr", "add", f"{WEB6}/128", "dev", "lo"])
    internet.run(["ip", "-6", "route", "add", f"{LAN6}/64", "via", GATEWAY_UPLINK6])
    web = internet.spawn(
        [sys.executable, "-m", "http.server", "80", "--bind", WEB6, "--directory", str(lab.tmp)], name="web6"
    )
    wait_for(lambda: "Serving HTTP" in web.log(), 10, what="the IPv6 web server")


def global_addresses(client: Client) -> list[str]:
    """The phone's usable global IPv6 addresses on eth0 (stable and temporary), from SLAAC."""
    listing = client.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]).stdout
    # Not while duplicate address detection still runs: nothing can bind them yet.
    usable = [line for line in listing.splitlines() if "tentative" not in line]
    return re.findall(r"inet6 (2001:db8:1:[0-9a-f:]+)/64", "\n".join(usable))


def web6(client: Client, source: str) -> str:
    return status(client, "--interface", source, "-g", f"http://[{WEB6}]/")


def uploads_counted(lab, mac: str) -> int:
    listing = (
        lab.gateway().run(["nft", "list", "set", "inet", f"{lab.prefix}_portald", "bytes_from_client"]).stdout
    )
    match = re.search(rf"{mac} counter packets \d+ bytes (\d+)", listing)
    return int(match.group(1)) if match else -1


def phones_on_dual_stack(lab) -> tuple[Internet, Client, Client, DHCPServer]:
    """Two phones with IPv4 leases and SLAAC addresses (a stable and a temporary one each)."""
    net = start_internet(lab)
    dual_stack(lab)
    phone, other = lab.client("c1"), lab.client("c2")
    for client in (phone, other):
        client.sysctl("net.ipv6.conf.eth0.use_tempaddr", "2")  # privacy addresses, as phones make them
    dhcp = lab.dnsmasq_dhcp(extra=["--enable-ra", f"--dhcp-range={LAN6},ra-only,64,2m"])
    for client in (phone, other):
        # A router solicitation now that dnsmasq answers one.
        client.run(["ip", "link", "set", "eth0", "down"])
        client.run(["ip", "link", "set", "eth0", "up"])
    for client in (phone, other):
        wait_for(lambda c=client: len(global_addresses(c)) >= 2, 20, what="a stable and a temporary address")
        client.dhclient()
    return net, phone, other, dhcp


def test_ipv6_is_closed_before_sign_in_and_open_for_every_address_after(lab) -> None:
    net, phone, other, dhcp = phones_on_dual_stack(lab)
    addresses = global_addresses(phone)
    # Without portald the gateway forwards IPv6 like anything else.
    assert web6(other, global_addresses(other)[0]) == "200"

    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    wait_for_leases(phone, other)
    wait_for_enforcement(lab)

    # --- captive: nothing gets out over IPv6, from any address ---
    for client in (phone, other):
        for source in global_addresses(client):
            assert web6(client, source) == "curl exit 28", (client, source)
        assert (
            client.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", WEB6], check=False).returncode != 0
        )

    # --- signed in (over IPv4, by MAC): every address of the phone gets out ---
    sign_in(phone)
    wait_for(lambda: web6(phone, addresses[0]) == "200", 5, what="the phone's IPv6 to get out")
    before = uploads_counted(lab, phone.mac("eth0"))
    for source in addresses:
        assert web6(phone, source) == "200", source
    assert uploads_counted(lab, phone.mac("eth0")) > before  # uploads over IPv6 count for the MAC
    assert phone.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", WEB6], check=False).returncode == 0
    # The other phone is still captive.
    assert web6(other, global_addresses(other)[0]) == "curl exit 28"

    # --- signed out: closed again ---
    sign_out(phone)
    wait_for(lambda: web6(phone, addresses[0]) == "curl exit 28", 5, what="the phone to be cut off")
    assert "Traceback" not in portal.log()


PORTAL6 = ["-g", "-H", "Host: portal.example", f"http://[{GATEWAY6}]"]


def dig6(client: Client, source: str, name: str = "example.test") -> str:
    """An A query to portald's IPv6 address, sent from C{source}."""
    argv = ["dig", "+short", "+time=1", "+tries=1", "-b", source, f"@{GATEWAY6}", name, "A"]
    return client.run(argv, check=False).stdout.strip()


def portal6(client: Client, source: str, path: str) -> str:
    return curl(client, "--interface", source, *PORTAL6[:-1], PORTAL6[-1] + path).stdout


def sign_in6(client: Client, source: str) -> None:
    """Click-through over IPv6 only, from C{source}."""
    landing = portal6(client, source, "/")
    result = curl(
        client, "--interface", source, "-o", "/dev/null", "-w", "%{http_code}", *PORTAL6[:-1],
        PORTAL6[-1] + "/login", "--data-urlencode", f"csrf={form_token(landing)}", "--data-urlencode", "accept=yes",
    )  # fmt: skip
    assert result.stdout in ("200", "303"), result


def spoofing_drops(lab) -> int:
    chain = lab.gateway().run(["nft", "list", "chain", "inet", f"{lab.prefix}_portald", "spoofing"]).stdout
    match = re.search(r"@owned6 counter packets (\d+)", chain)
    assert match, chain
    return int(match.group(1))


def test_ipv6_guests_are_known_by_their_device_in_dns_and_on_the_portal(lab) -> None:
    net, phone, other, dhcp = phones_on_dual_stack(lab)
    settings = {
        "portal": {"address6": GATEWAY6, "subnets": [str(LAN), f"{LAN6}/64"]},
        "dns": {"listen": [GATEWAY_ADDRESS, GATEWAY6]},
    }
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    wait_for_leases(phone, other)
    wait_for_enforcement(lab)
    phone6, other6 = global_addresses(phone), global_addresses(other)

    # --- captive, over IPv6: the portal's answer, and the portal knows the device ---
    for source in phone6:
        assert dig6(phone, source) == GATEWAY_ADDRESS, source
    assert "csrf" in portal6(other, other6[0], "/")  # its MAC, so the sign-in form

    # --- signed in over IPv4: its IPv6 queries are its own, forwarded ---
    sign_in(phone)
    for source in phone6:
        wait_for(lambda s=source: dig6(phone, s) == WEB_ADDRESS, 5, what=f"forwarded DNS from {source}")
    assert dig6(other, other6[0]) == GATEWAY_ADDRESS  # the other phone is still captive

    # --- signing in over IPv6 only: by the device, so its IPv4 gets out too ---
    sign_in6(other, other6[1])
    wait_for(lambda: web6(other, other6[0]) == "200", 5, what="the other phone's IPv6 to get out")
    assert status(other, f"http://{WEB_ADDRESS}/") == "200"
    assert dig6(other, other6[0]) == WEB_ADDRESS
    assert "csrf" in portal6(other, other6[1], "/status")  # its status page, with a sign-out form

    # --- a device that takes a signed-in phone's IPv6 address reaches nothing ---
    sign_out(other)
    before = spoofing_drops(lab)
    other.run(["ip", "addr", "add", f"{phone6[0]}/64", "dev", "eth0", "nodad"])
    assert "timed out" in dig6(other, phone6[0])
    assert web6(other, phone6[0]) == "curl exit 28"
    assert spoofing_drops(lab) > before
    # The phone itself is unaffected.
    assert dig6(phone, phone6[0]) == WEB_ADDRESS
    assert web6(phone, phone6[0]) == "200"
    assert "Traceback" not in portal.log()


def test_downloads_at_every_ipv6_address_count_toward_the_quota(lab) -> None:
    net, phone, other, dhcp = phones_on_dual_stack(lab)
    (lab.tmp / "big.bin").write_bytes(bytes(3 * 1024 * 1024))
    settings = {"sessions": {"quota": "2MB", "sample_interval": "500ms"}}
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    wait_for_leases(phone)
    wait_for_enforcement(lab)
    sign_in(phone)  # over IPv4: its IPv6 addresses are its own by MAC
    stable, temporary = global_addresses(phone)[:2]
    wait_for(lambda: web6(phone, stable) == "200", 5, what="the phone's IPv6 to get out")
    # 3 MB over a privacy address, which no lease names: the quota is spent.
    assert status(phone, "--interface", temporary, "-g", f"http://[{WEB6}]/big.bin") == "200"
    ended = f"deauthorized {phone.mac('eth0')}"
    wait_for(lambda: ended in portal.log(), 10, what="the quota to end the session")
    assert "quota" in portal.log().split(ended, 1)[1].splitlines()[0]
    assert web6(phone, stable) == "curl exit 28"
    assert "Traceback" not in portal.log()
