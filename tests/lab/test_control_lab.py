"""
The staff's hand on a real gateway: ``portald-ctl`` on the daemon's control
socket, the nftables backend, a phone with a real DHCP lease.

    auth      a captive phone is in the kernel's authorized set when the
              command returns (it is answered once the firewall has it),
              and reaches the internet
    deauth    cut off again, its open TCP connection's next request included;
              the portal tells the phone its session was ended by staff
    allow     a device passes without a session; disallow ends that
    reload    a new firewall.walled_garden network is reachable for the
              captive phone; SIGHUP with a broken file leaves every session
              and rule in place
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.lab.daemon import start_portald
from tests.lab.internet import WEB_ADDRESS, start_internet
from tests.lab.netlab import wait_for
from tests.lab.test_enforcement import KEEPALIVE, PORTAL, curl, status, wait_for_enforcement, wait_for_leases

CTL = Path(__file__).resolve().parent.parent.parent / ".venv" / "bin" / "portald-ctl"


def ctl(lab, portal, *args: str) -> subprocess.CompletedProcess[str]:
    """portald-ctl as the operator runs it on the gateway."""
    return lab.gateway().run([str(CTL), "--config", str(portal.config_path), *args], check=False)


def authorized(lab) -> str:
    table = f"{lab.prefix}_portald"
    return lab.gateway().run(["nft", "list", "set", "inet", table, "authorized"]).stdout


def allowed(lab) -> str:
    table = f"{lab.prefix}_portald"
    return lab.gateway().run(["nft", "list", "set", "inet", table, "allowed_macs"]).stdout


def test_staff_sign_a_phone_in_and_out(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    phone = lab.client("c1")
    phone.dhclient()
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    wait_for_leases(phone)
    wait_for_enforcement(lab)
    mac, ip = phone.mac("eth0"), phone.address()
    assert status(phone, f"http://{WEB_ADDRESS}/") == "511"

    # --- auth: in force when the command returns ---
    done = ctl(lab, portal, "auth", ip, "--duration", "1h", "--note", "lab")
    assert done.returncode == 0, done.stderr
    assert mac in authorized(lab)
    assert status(phone, f"http://{WEB_ADDRESS}/") == "200"
    rows = json.loads(ctl(lab, portal, "--json", "clients").stdout)
    assert [(r["mac"], r["ip"], r["method"]) for r in rows] == [(mac, ip, "staff")]

    # --- deauth: cut off, the open connection too ---
    keepalive = subprocess.Popen(
        phone.exec_argv([sys.executable, "-c", KEEPALIVE]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert keepalive.stdout.readline().strip() == "EXAMPLE-SITE"
    done = ctl(lab, portal, "deauth", mac)
    assert done.returncode == 0, done.stderr
    assert mac not in authorized(lab)
    # The connection's flush follows the rule change.
    wait_for(lambda: status(phone, f"http://{WEB_ADDRESS}/") == "511", 5, what="the phone to be cut off")
    second, _ = keepalive.communicate("go\n", timeout=10)
    assert second.startswith("cut off"), second
    page = curl(phone, *PORTAL[:-1], PORTAL[-1] + "/").stdout
    assert (
        "because the network&#39;s staff ended it" in page or "because the network's staff ended it" in page
    )

    # --- allow / disallow: no session, in the kernel's allowed set ---
    assert ctl(lab, portal, "allow", mac, "--note", "the till").returncode == 0
    assert mac in allowed(lab)
    assert status(phone, f"http://{WEB_ADDRESS}/") == "200"
    # Kept across a restart (the store has it), and in the closed table too.
    portal.restart()
    wait_for_enforcement(lab)
    assert mac in allowed(lab)
    assert status(phone, f"http://{WEB_ADDRESS}/") == "200"
    assert ctl(lab, portal, "disallow", mac).returncode == 0
    assert mac not in allowed(lab)
    wait_for(
        lambda: status(phone, f"http://{WEB_ADDRESS}/") == "511", 5, what="the phone to be captive again"
    )

    # --- reload: a new walled-garden network, in force when the command returns ---
    config = yaml.safe_load(portal.config_path.read_text())
    config["firewall"]["walled_garden"] = [f"{WEB_ADDRESS}/32"]
    portal.config_path.write_text(yaml.safe_dump(config))
    done = ctl(lab, portal, "reload")
    assert (done.returncode, done.stdout) == (0, "reloaded: firewall.walled_garden\n"), done.stderr
    assert status(phone, f"http://{WEB_ADDRESS}/") == "200"
    # A restart-only key is refused, and nothing changes.
    config["http"]["port"] = 8080
    portal.config_path.write_text(yaml.safe_dump(config))
    done = ctl(lab, portal, "reload")
    assert done.returncode == 1
    assert done.stderr == "portald-ctl: http.port: cannot change without a restart (nothing was changed)\n"

    # --- SIGHUP with a broken file: every session and rule stays ---
    del config["firewall"]["walled_garden"]
    config["http"]["port"] = 80
    portal.config_path.write_text(yaml.safe_dump(config))
    assert ctl(lab, portal, "reload").returncode == 0
    assert ctl(lab, portal, "auth", mac).returncode == 0
    table = ["nft", "list", "table", "inet", f"{lab.prefix}_portald"]

    def rules() -> str:
        # The table without what ticks on its own: timeouts running down, counters.
        text = lab.gateway().run(table).stdout
        return re.sub(r" expires \w+| packets \d+ bytes \d+", "", text)

    before = rules()
    portal.config_path.write_text(portal.config_path.read_text() + "dns: {port: 70000}\n")
    os.kill(portal.process.pid, signal.SIGHUP)
    wait_for(
        lambda: "reload refused, nothing changed" in portal.log(), 5, what="the refused reload in the log"
    )
    assert "dns: given twice" in portal.log()
    assert portal.process.running()
    assert rules() == before and mac in before
    assert status(phone, f"http://{WEB_ADDRESS}/") == "200"
    assert "Traceback" not in portal.log()
