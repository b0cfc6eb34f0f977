"""
The modern way in, on a real gateway: a test CA the client trusts, the
portal's certificate from it, dnsmasq announcing the API's URI as DHCP
option 114 (the line ``portald-ctl dhcp-options`` prints), dhclient asking
for it and writing it down, and curl fetching the API over HTTPS through
portald's DNS before and after sign-in and after the session's end.  A TLS
handshake for another name is refused (the portal's certificate is never
shown for it), and Chromium opens user-portal-url without a warning.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.lab.daemon import start_portald
from tests.lab.internet import start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, wait_for
from tests.lab.test_control_lab import CTL
from tests.lab.test_enforcement import form_token, wait_for_enforcement, wait_for_leases
from tests.tls_support import LabCA

API = "https://portal.example/api/captive"
SESSION = 12  # seconds: long enough to look at, short enough to wait out


def https(client, ca, *args: str, timeout: float = 5) -> subprocess.CompletedProcess:
    return client.run(
        ["curl", "-sS", "--max-time", str(timeout), "--cacert", str(ca), *args],
        check=False,
        timeout=timeout + 5,
    )


def ask_api(client, ca) -> dict:
    done = https(client, ca, "-H", "Accept: application/captive+json", "-D", "-", API)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition("\n\n")  # (text mode: CRLF read as LF)
    assert "content-type: application/captive+json" in head.lower(), head
    assert "cache-control: private, no-store" in head.lower(), head
    return json.loads(body)


def test_a_phone_finds_the_api_in_its_lease_and_follows_it(lab) -> None:
    ca = LabCA.make()
    certificate, key = ca.issue(lab.tmp, "portal.example")
    trusted = ca.write_ca(lab.tmp / "lab-ca.pem")
    settings = {
        "http": {"tls": {"certificate": str(certificate), "key": str(key)}},
        "sessions": {"timeout": f"{SESSION}s"},
    }
    # The line the operator is told to put in dnsmasq.conf, from the same configuration.
    net = start_internet(lab)
    lease_file = lab.tmp / "dnsmasq.leases"
    portal_config = lab.tmp / "portald.yaml"
    phone = lab.client("c1")
    dhcp = None

    portal = start_portald(lab, lease_file=lease_file, upstream=[net.dns], settings=settings)
    printed = lab.gateway().run([str(CTL), "--config", str(portal_config), "dhcp-options"]).stdout
    (option,) = [line for line in printed.splitlines() if line.startswith("dhcp-option-force=114,")]
    assert option == f'dhcp-option-force=114,"{API}"'
    # Into a dnsmasq.conf, as the operator does (its parser takes the quotes off).
    snippet = lab.tmp / "captive-api.conf"
    snippet.write_text(option + "\n")
    dhcp = lab.dnsmasq_dhcp(extra=[f"--conf-file={snippet}"])

    # dhclient asks for option 114 (its name: default-url) and writes it in its lease.
    phone.requested_options.append("default-url")
    phone.dhclient()
    wait_for_leases(phone)
    wait_for_enforcement(lab)
    leases = (lab.tmp / "c1-dhclient.leases").read_text()
    found = re.search(r'option default-url "([^"]+)";', leases)
    assert found, leases
    uri = found.group(1)
    assert uri == API

    # Captive: the API says so, and where to sign in, over HTTPS.
    state = ask_api(phone, trusted)
    assert state == {"captive": True, "user-portal-url": "https://portal.example/"}
    page = https(phone, trusted, state["user-portal-url"])
    assert page.returncode == 0 and "Terms of use" in page.stdout, page.stderr
    # Signing in over HTTPS, as the sign-in sheet does.
    signed = https(
        phone, trusted, "-o", "/dev/null", "-w", "%{http_code}", "https://portal.example/login",
        "--data-urlencode", f"csrf={form_token(page.stdout)}", "--data-urlencode", "accept=yes",
    )  # fmt: skip
    assert signed.stdout in ("200", "303"), signed
    state = ask_api(phone, trusted)
    assert state["captive"] is False and 0 < state["seconds-remaining"] <= SESSION, state
    # A restart changes nothing for the phone (the session comes back from the store).
    portal.restart()
    after = ask_api(phone, trusted)
    assert after["captive"] is False and after["seconds-remaining"] <= state["seconds-remaining"], after
    # The session ends: captive again.
    wait_for(lambda: ask_api(phone, trusted)["captive"] is True, SESSION + 10, interval=1, what="the end")

    # Another name on the portal's address: no handshake, never the portal's certificate.
    other = https(phone, trusted, "--resolve", f"bank.example:443:{GATEWAY_ADDRESS}", "https://bank.example/")
    assert other.returncode == 35, (
        other.returncode,
        other.stderr,
    )  # a handshake failure, not a name mismatch
    # ... and no other host's port 443 answers a captive phone (reset in the kernel, never intercepted).
    assert https(phone, trusted, "https://203.0.113.10/").returncode == 7

    # Chromium, trusting the lab's CA (an NSS database in its $HOME), opens user-portal-url.
    home = lab.tmp / "chromium-home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-n", "portald lab CA", "-t", "C,,", "-i", str(trusted)],
                   check=True)  # fmt: skip
    shown = phone.run(
        ["env", f"HOME={home}", sys.executable, "-m", "tests.lab.browser_open", state["user-portal-url"],
         str(lab.tmp / "chromium-profile"), str(lab.tmp / "portal-https.png")],
        check=False, timeout=90,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    opened = json.loads(shown.stdout.strip().splitlines()[-1])
    assert "error" not in opened, opened
    assert opened["url"] == "https://portal.example/" and opened["status"] == 200
    assert "Terms of use" in opened["text"] and opened["tls"]["protocol"] in ("TLS 1.3", "TLS 1.2")
    assert "Traceback" not in portal.log()
    assert dhcp is not None
