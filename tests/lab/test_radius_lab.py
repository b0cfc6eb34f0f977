"""
RADIUS against a real FreeRADIUS (Debian's 3.2) in the lab's internet
namespace, the gateway's portald its NAS:

    sign-in     a guest signs in with a RADIUS user; the first server is
                dead, the second answers; a wrong password shows the
                server's Reply-Message
    accounting  Start, Interim-Update and Stop reach FreeRADIUS' detail
                file, with the octets the kernel counted; the Accept's
                Session-Timeout ends the session on time
    outage      FreeRADIUS is stopped while the guest is online and portald
                restarts in between: the records wait on disk and arrive
                once it is back
    disconnect  radclient's Disconnect-Request cuts a guest off within a
                second and its Stop says Admin-Reset; a wrong secret
                changes nothing
"""

from __future__ import annotations

import time

from portald.firewall.kernelstate import parse_kernel_state
from tests.freeradius import RADCLIENT, FreeRadius, write_config
from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, serve_files, start_internet
from tests.lab.netlab import GATEWAY_UPLINK_ADDRESS, INTERNET_UPLINK_ADDRESS, wait_for
from tests.lab.test_control_lab import authorized, ctl
from tests.lab.test_enforcement import PORTAL, curl, form_token, status, wait_for_enforcement, wait_for_leases

SITE = f"http://{WEB_ADDRESS}/"
FILES_PORT = 8000
FILE_SIZE = 300_000
SECRET = "lab-radius-secret"
DAS_SECRET = "lab-das-secret"
# Nothing answers here: portald must give up on it and ask the next server.
DEAD_SERVER = "198.51.100.3"
AUTH_PORT, ACCT_PORT, DAS_PORT = 18120, 18130, 3799
USERS = """\
alice Cleartext-Password := "wonderland"
\tSession-Timeout = 75,
\tAcct-Interim-Interval = 60,
\tClass = "plan-gold",
\tReply-Message = "Welcome, Alice"

bob Cleartext-Password := "builder"

# A device known by its MAC (MAC authentication): let in without the portal.
02-00-00-00-00-03 Cleartext-Password := "02-00-00-00-00-03"
\tSession-Timeout = 3600
"""


def radius_sign_in(phone, user: str, password: str) -> str:
    landing = curl(phone, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    return curl(
        phone, *PORTAL[:-1], PORTAL[-1] + "/login",
        "--data-urlencode", f"csrf={form_token(landing)}", "--data-urlencode", "method=radius",
        "--data-urlencode", f"username={user}", "--data-urlencode", f"password={password}",
        timeout=15,
    ).stdout  # fmt: skip


def kernel_download(lab, ip: str) -> int:
    """The bytes the kernel counted towards C{ip} in its session."""
    listing = lab.gateway().run(["nft", "-j", "list", "table", "inet", f"{lab.prefix}_portald"]).stdout
    return parse_kernel_state(listing).to_client[ip].bytes


def radclient(lab, radius_dir, kind: str, secret: str, attributes: str):
    return lab.internet().run(
        [RADCLIENT, "-d", str(radius_dir), "-r", "1", "-t", "2", "-x",
         f"{GATEWAY_UPLINK_ADDRESS}:{DAS_PORT}", kind, secret],
        input=attributes, check=False,
    )  # fmt: skip


def records(server: FreeRadius, user: str) -> list[dict[str, str]]:
    return [r for r in server.detail() if r.get("User-Name") == user]


def test_radius_on_a_real_gateway(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    serve_files(lab, {"file.bin": bytes(FILE_SIZE)}, FILES_PORT)
    radius_dir = write_config(
        lab.tmp / "freeradius",
        address=INTERNET_UPLINK_ADDRESS,
        auth_port=AUTH_PORT,
        acct_port=ACCT_PORT,
        clients=[(GATEWAY_UPLINK_ADDRESS, SECRET)],
        users=USERS,
        reject_message="Sorry, that password is not right",
    )
    server = FreeRadius(radius_dir, lambda argv: lab.internet().spawn(argv, name="freeradius"))
    server.start()
    phones = [lab.client(name) for name in ("c1", "c2", "c3")]
    for phone in phones:
        phone.dhclient()
    alice, bob, known = phones
    settings = {
        "auth": {"methods": [{"method": "radius"}]},
        "sessions": {"sample_interval": "500ms"},
        "radius": {
            "servers": [
                {"address": DEAD_SERVER, "secret": SECRET},
                {"address": INTERNET_UPLINK_ADDRESS, "secret": SECRET,
                 "auth_port": AUTH_PORT, "acct_port": ACCT_PORT},
            ],
            "nas_identifier": "lab-gateway",
            "timeout": "1s",
            "retries": 1,
            "give_up_after": "6s",
            "dead_time": "10m",
            "mac_auth": {"enabled": True},
            "das": {
                "listen": f"{GATEWAY_UPLINK_ADDRESS}:{DAS_PORT}",
                "clients": [{"address": INTERNET_UPLINK_ADDRESS, "secret": DAS_SECRET}],
            },
        },
    }  # fmt: skip
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    wait_for_leases(*phones)
    wait_for_enforcement(lab)
    macs = [phone.mac("eth0") for phone in phones]

    # --- MAC authentication: the known device is online without the portal ---
    wait_for(lambda: macs[2] in authorized(lab), 10, what="the known device let in by its MAC")
    assert status(known, SITE) == "200"
    assert macs[0] not in authorized(lab) and macs[1] not in authorized(lab)

    # --- sign-in: the first server is dead, the second says no, then yes ---
    started = time.monotonic()
    page = radius_sign_in(alice, "alice", "not-this")
    assert "Sorry, that password is not right" in page, page
    assert time.monotonic() - started < 6.5  # the first server's share of the bound, then the second's answer
    assert f"RADIUS authentication server {DEAD_SERVER}:1812 did not answer" in portal.log()
    page = radius_sign_in(alice, "alice", "wonderland")
    assert "You are online" in page, page
    signed_in = time.monotonic()
    assert macs[0] in authorized(lab)
    assert status(alice, SITE) == "200"
    assert status(alice, f"http://{WEB_ADDRESS}:{FILES_PORT}/file.bin") == "200"
    wait_for(lambda: records(server, "alice"), 5, what="alice's Start")
    (start,) = records(server, "alice")
    assert start["Acct-Status-Type"] == "Start"
    assert start["Class"] == "0x" + b"plan-gold".hex()
    assert start["Calling-Station-Id"] == macs[0].upper().replace(":", "-")
    assert start["NAS-Identifier"] == "lab-gateway"
    time.sleep(1.5)  # three samples of the counters after the download
    downloaded = kernel_download(lab, alice.address())
    assert downloaded > FILE_SIZE

    # --- disconnect: a wrong secret changes nothing; the right one cuts bob off ---
    assert "You are online" in radius_sign_in(bob, "bob", "builder")
    assert status(bob, SITE) == "200"
    who = f'Calling-Station-Id = "{macs[1].upper().replace(":", "-")}"\nMessage-Authenticator = 0x00\n'
    forged = radclient(lab, radius_dir, "disconnect", "guessed-secret", who)
    assert "Disconnect-ACK" not in forged.stdout, forged.stdout
    assert macs[1] in authorized(lab)
    asked = time.monotonic()
    done = radclient(lab, radius_dir, "disconnect", DAS_SECRET, who)
    assert "Received Disconnect-ACK" in done.stdout, done.stdout + done.stderr
    wait_for(lambda: macs[1] not in authorized(lab), 1, what="bob cut off in the kernel")
    assert time.monotonic() - asked < 3  # radclient's own round trip included
    wait_for(lambda: status(bob, SITE) == "511", 10, what="bob to meet the portal again")
    wait_for(lambda: len(records(server, "bob")) == 2, 5, what="bob's Stop")
    assert records(server, "bob")[-1]["Acct-Terminate-Cause"] == "Admin-Reset"
    unknown = radclient(
        lab, radius_dir, "disconnect", DAS_SECRET, 'User-Name = "nobody"\nMessage-Authenticator = 0x00\n'
    )
    assert "Disconnect-NAK" in unknown.stdout and "Session-Context-Not-Found" in unknown.stdout, (
        unknown.stdout
    )

    # --- outage: FreeRADIUS down while alice is online, portald restarted meanwhile ---
    server.stop()
    portal.restart()
    wait_for_enforcement(lab)
    assert macs[0] in authorized(lab)  # restored: RADIUS is not asked again
    # The Interim-Update (60 s after sign-in) is made while nobody answers.
    wait_for(lambda: "accounting record(s) wait, kept on disk" in portal.log(), 70, what="the queue to wait")
    assert time.monotonic() - signed_in >= 60
    server.start()
    # The Accept's Session-Timeout (75 s) ends the session; Interim and Stop arrive.
    wait_for(lambda: macs[0] not in authorized(lab), 30, what="alice's Session-Timeout")
    assert 74 <= time.monotonic() - signed_in < 85
    wait_for(lambda: len(records(server, "alice")) == 3, 20, what="alice's Interim-Update and Stop")
    kinds = [r["Acct-Status-Type"] for r in records(server, "alice")]
    assert kinds == ["Start", "Interim-Update", "Stop"], kinds
    stop = records(server, "alice")[-1]
    assert stop["Acct-Terminate-Cause"] == "Session-Timeout"
    assert int(stop["Acct-Session-Time"]) >= 74
    # Download is Output as the NAS sees it; within a packet or two of the kernel's count.
    assert abs(int(stop["Acct-Output-Octets"]) - downloaded) <= 3000, (stop, downloaded)
    assert int(records(server, "alice")[1]["Acct-Delay-Time"]) >= 1  # it waited for the server
    shown = ctl(lab, portal, "status").stdout
    # (MAC authentication asked while FreeRADIUS was down: skipped until Status-Server or dead_time.)
    assert f"radius    {INTERNET_UPLINK_ADDRESS}:{AUTH_PORT}: " in shown, shown
    assert "radius    accounting: 0 records waiting" in shown, shown
    assert "Traceback" not in portal.log()
