"""
portald's DNS in the lab: a client holding a real DHCP lease asks the
gateway with dig; the upstream is the lab internet's dnsmasq.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import yaml

from tests.lab.daemon import READY, lab_config
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, GATEWAY_UPLINK_ADDRESS, LabError, wait_for

RUNNER = Path(__file__).with_name("portald_with_control.py")


def control(path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def dig(client, name: str, *options: str) -> str:
    argv = ["dig", "+time=2", "+tries=1", f"@{GATEWAY_ADDRESS}", name, "A", *options]
    return client.run(argv, check=True).stdout


def test_dig_from_a_leased_client_before_and_after_authorize(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    # No firewall here: this test is about DNS alone.
    settings = {"firewall": {"backend": "none"}}
    config = lab_config(lab, lease_file=dhcp.lease_file, upstream=[net.dns], settings=settings)
    config_path = lab.tmp / "portald.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    control_path = lab.tmp / "control.sock"
    portald = lab.gateway().spawn(
        [sys.executable, str(RUNNER), str(config_path), str(control_path)], name="portald"
    )
    wait_for(lambda: READY in portald.log() or not portald.running(), 20, what="portald to start")
    if not portald.running():
        raise LabError(f"portald exited at start:\n{portald.log()}")

    phone = lab.client("c1")
    phone.dhclient()
    ip = phone.address()
    mac = wait_for(
        lambda: (reply := control(control_path, f"mac-for {ip}")) != "none" and reply, 10,
        what="portald to learn the lease",
    )  # fmt: skip
    assert mac == phone.mac_address

    # Before sign-in: the portal's address, with the short TTL, over UDP and TCP.
    before = dig(phone, "example.test", "+noall", "+answer")
    assert before.split() == ["example.test.", "5", "IN", "A", GATEWAY_ADDRESS]
    assert dig(phone, "example.test", "+short", "+tcp").split() == [GATEWAY_ADDRESS]
    assert "status: NXDOMAIN" in dig(phone, "use-application-dns.net")

    assert control(control_path, f"authorize {mac} {ip}") == "ok"
    # The very next query: the upstream's real answer.
    assert dig(phone, "example.test", "+short").split() == [WEB_ADDRESS]
    assert dig(phone, "www.example.test", "+short", "+tcp").split() == [WEB_ADDRESS]
    # Another client on the LAN, not signed in: still the portal.
    other = lab.client("c2", address="192.0.2.200")
    assert dig(other, "example.test", "+short").split() == [GATEWAY_ADDRESS]
    assert "status: NXDOMAIN" in dig(phone, "not-a-test-name.invalid")
    assert "status: NXDOMAIN" in dig(phone, "use-application-dns.net")
    assert dig(phone, "example.test", "+short").split() == [WEB_ADDRESS]
    # Forwarded by the gateway (from its uplink address); the lab's dnsmasq
    # answers with TTL 0, which portald passes on and does not cache.
    upstream_log = net.dns_process.log()
    assert upstream_log.count(f"query[A] example.test from {GATEWAY_UPLINK_ADDRESS}") == 2, upstream_log
    assert dig(phone, "example.test", "+noall", "+answer").split() == [
        "example.test.",
        "0",
        "IN",
        "A",
        WEB_ADDRESS,
    ]
    assert "Traceback" not in portald.log()
