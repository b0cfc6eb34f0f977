"""
Enforcement end to end: the real daemon with the nftables backend in the
gateway, a phone with a real DHCP lease, the lab's internet serving HTTP and
HTTPS on 203.0.113.10 and DNS on 203.0.113.53.

    unauthorized   web -> the portal's 511, DNS to any resolver -> portald,
                   HTTPS -> reset at once, QUIC never arrives, ping dropped
    signed in      (through the click-through form) the real servers answer
    restart        a signed-in phone's traffic never stops; others stay captive
    signed out     cut off again, an open connection's next request included
    walled garden  a dns.walled_garden name resolved through portald opens
                   its address to clients that have not signed in
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.lab.daemon import start_portald
from tests.lab.internet import DNS_ADDRESS, WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, Client, wait_for

SERVERS = Path(__file__).parent.parent / "firewall_servers.py"
PORTAL = ["-H", "Host: portal.example", f"http://{GATEWAY_ADDRESS}"]

# Opens one HTTP/1.1 connection, makes a request, waits for a line on stdin,
# then makes a second request on the same connection.
KEEPALIVE = f"""
import http.client, sys
def get(path):
    body = connection.getresponse().read().decode() if connection.request("GET", path) is None else ""
    return "EXAMPLE-SITE" if "EXAMPLE-SITE" in body else body[:80]
connection = http.client.HTTPConnection("{WEB_ADDRESS}", 80, timeout=3)
print(get("/first"), flush=True)
sys.stdin.readline()
try:
    print(get("/second"), flush=True)
except Exception as e:
    print("cut off:", type(e).__name__, flush=True)
"""


def curl(client: Client, *args: str, timeout: float = 3) -> subprocess.CompletedProcess:
    return client.run(["curl", "-s", "--max-time", str(timeout), *args], check=False, timeout=timeout + 5)


def status(client: Client, *args: str) -> str:
    """The HTTP status, or curl's exit status (7: refused or reset, 28: timed out)."""
    result = curl(client, "-o", "/dev/null", "-w", "%{http_code}", *args)
    return result.stdout if result.returncode == 0 else f"curl exit {result.returncode}"


def dig(client: Client, server: str, name: str = "example.test") -> str:
    result = client.run(["dig", "+short", "+time=1", "+tries=1", f"@{server}", name, "A"], check=False)
    return result.stdout.strip()


def udp_send(client: Client, address: str, port: int) -> None:
    script = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'quic?', ('{address}', {port}))"
    client.run([sys.executable, "-c", script])


def wait_for_enforcement(lab) -> None:
    """
    Until portald's first whole-table load is in the kernel.  The portal page
    answers as soon as the listeners are open, which is before that load
    (queued at start): until it lands the gateway forwards everything.  The
    load is one transaction, so once the table lists, every rule is in.
    """
    table = ["nft", "list", "chain", "inet", f"{lab.prefix}_portald", "from_clients"]
    wait_for(
        lambda: lab.gateway().run(table, check=False).returncode == 0, 10, what="the firewall's first load"
    )


def wait_for_leases(*clients: Client) -> None:
    """Until portald knows each client's lease: its portal page offers the form."""
    for client in clients:
        wait_for(
            lambda c=client: "csrf" in curl(c, *PORTAL[:-1], PORTAL[-1] + "/").stdout, 10, what="the lease"
        )


def form_token(page: str) -> str:
    match = re.search(r'name="csrf"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf"', page
    )
    assert match, page
    return match.group(1)


def sign_in(client: Client) -> None:
    landing = curl(client, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    result = curl(
        client, "-o", "/dev/null", "-w", "%{http_code}", *PORTAL[:-1], PORTAL[-1] + "/login",
        "--data-urlencode", f"csrf={form_token(landing)}", "--data-urlencode", "accept=yes",
    )  # fmt: skip
    assert result.stdout in ("200", "303"), result


def sign_out(client: Client) -> None:
    page = curl(client, *PORTAL[:-1], PORTAL[-1] + "/status").stdout
    result = curl(
        client, "-o", "/dev/null", "-w", "%{http_code}", *PORTAL[:-1], PORTAL[-1] + "/logout",
        "--data-urlencode", f"csrf={form_token(page)}",
    )  # fmt: skip
    assert result.stdout == "200", result


def test_enforcement_end_to_end(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    quic_log = lab.tmp / "quic.log"
    ready = lab.tmp / "quic.ready"
    lab.internet().spawn(
        [sys.executable, str(SERVERS), "udp-log", WEB_ADDRESS, "443", str(quic_log), str(ready)], name="quic"
    )
    wait_for(ready.exists, 10, what="the QUIC listener")
    phone, other = lab.client("c1"), lab.client("c2")
    phone.dhclient()
    other.dhclient()
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    # portald knows both leases once the portal page offers the form.
    wait_for_leases(phone, other)
    wait_for_enforcement(lab)

    # --- unauthorized ---
    for client in (phone, other):
        assert status(client, f"http://{WEB_ADDRESS}/") == "511"
        assert dig(client, DNS_ADDRESS) == GATEWAY_ADDRESS  # a hard-coded resolver gets portald
        # curl exit 7: the connection was refused by a reset, not left to time out (28).
        assert status(client, f"https://{WEB_ADDRESS}/") == "curl exit 7"
        udp_send(client, WEB_ADDRESS, 443)
        assert client.run(["ping", "-c", "1", "-W", "1", WEB_ADDRESS], check=False).returncode != 0
    assert not quic_log.exists()

    # --- signed in through the click-through form ---
    sign_in(phone)
    wait_for(lambda: status(phone, f"http://{WEB_ADDRESS}/") == "200", 5, what="the phone to get out")
    assert "EXAMPLE-SITE" in curl(phone, f"http://{WEB_ADDRESS}/").stdout
    assert dig(phone, DNS_ADDRESS) == WEB_ADDRESS
    https = ["--cacert", str(net.ca_certificate), "--resolve", f"example.test:443:{WEB_ADDRESS}"]
    assert status(phone, *https, "https://example.test/") == "200"
    udp_send(phone, WEB_ADDRESS, 443)
    wait_for(quic_log.exists, 5, what="the phone's UDP 443 packet")
    assert phone.run(["ping", "-c", "1", "-W", "1", WEB_ADDRESS], check=False).returncode == 0
    listing = lab.gateway().run(["nft", "list", "table", "inet", f"{lab.prefix}_portald"]).stdout
    assert phone.mac("eth0") in listing
    (lab.tmp / "nft-list-table.txt").write_text(listing)

    # --- a restart keeps the phone online and the other captive ---
    pings = subprocess.Popen(
        phone.exec_argv(["ping", "-c", "40", "-i", "0.1", "-W", "1", WEB_ADDRESS]),
        stdout=subprocess.PIPE,
        text=True,
    )
    portal.restart()
    output, _ = pings.communicate(timeout=30)
    assert " 0% packet loss" in output, output
    assert status(phone, f"http://{WEB_ADDRESS}/") == "200"
    assert status(other, f"http://{WEB_ADDRESS}/") == "511"

    # --- signed out: cut off, an open connection's next request included ---
    keepalive = subprocess.Popen(
        phone.exec_argv([sys.executable, "-c", KEEPALIVE]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert keepalive.stdout.readline().strip() == "EXAMPLE-SITE"
    sign_out(phone)
    wait_for(lambda: status(phone, f"http://{WEB_ADDRESS}/") == "511", 5, what="the phone to be cut off")
    second, _ = keepalive.communicate("go\n", timeout=10)
    assert second.startswith("cut off"), second
    assert dig(phone, DNS_ADDRESS) == GATEWAY_ADDRESS
    assert status(phone, f"https://{WEB_ADDRESS}/") == "curl exit 7"
    assert "Traceback" not in portal.log()


def test_walled_garden_names_open_their_addresses_to_everyone(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    phone = lab.client("c1")
    phone.dhclient()
    portal = start_portald(
        lab,
        lease_file=dhcp.lease_file,
        upstream=[net.dns],
        settings={"dns": {"walled_garden": ["news.example.test"]}},
    )
    wait_for_leases(phone)
    wait_for_enforcement(lab)
    assert status(phone, f"http://{WEB_ADDRESS}/") == "511"
    # The phone, not signed in, resolves a walled-garden name through portald...
    assert dig(phone, GATEWAY_ADDRESS, "news.example.test") == WEB_ADDRESS
    # ...and the address it got is open to it, web and everything else.
    wait_for(lambda: status(phone, f"http://{WEB_ADDRESS}/") == "200", 5, what="the walled garden to open")
    assert "EXAMPLE-SITE" in curl(phone, "-H", "Host: news.example.test", f"http://{WEB_ADDRESS}/").stdout
    assert phone.run(["ping", "-c", "1", "-W", "1", WEB_ADDRESS], check=False).returncode == 0
    listing = (
        lab.gateway()
        .run(["nft", "list", "set", "inet", f"{lab.prefix}_portald", "walled_garden_dns4"])
        .stdout
    )
    assert re.search(rf"{re.escape(WEB_ADDRESS)} timeout \S+ expires", listing), listing
    # Other names still get the portal.
    assert dig(phone, GATEWAY_ADDRESS, "example.test") == GATEWAY_ADDRESS
    assert "Traceback" not in portal.log()
