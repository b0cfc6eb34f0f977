"""
The Raspberry Pi recipe, packaging/raspberry-pi/setup-hotspot, in the lab's
gateway (its "lan" stands for wlan0, its "wan" for eth0), with --root: the
files it writes, checked by their own programs, and then used.

    files       dnsmasq --test, nft -c -f, hostapd's parser (no radio here:
                it must get past the file to the driver), twistd --check
    twice       the second run changes nothing
    refusals    a missing interface, a missing --country
    --remove    the recipe's files gone, portald.yaml as it was
    in use      dnsmasq with the recipe's file is the lab's DHCP server, the
                recipe's portald.yaml runs portald and its nat.nft the
                uplink: a phone gets its address and option 114, signs in,
                and is online
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.lab.daemon import Portald
from tests.lab.guest import Guest
from tests.lab.internet import start_internet
from tests.lab.netlab import GATEWAY_ADDRESS, LabError, wait_for

REPOSITORY = Path(__file__).parent.parent.parent
RECIPE = REPOSITORY / "packaging" / "raspberry-pi" / "setup-hotspot"
BIN = Path(sys.executable).parent
ARGUMENTS = ["--lan", "lan", "--uplink", "wan", "--ssid", "Lab Café Guest", "--country", "GB"]


def pi_root(tmp: Path) -> Path:
    """A root with what the package installs: the shipped portald.yaml."""
    root = tmp / "pi"
    (root / "etc" / "portald").mkdir(parents=True)
    shutil.copy(REPOSITORY / "etc" / "portald.yaml", root / "etc" / "portald" / "portald.yaml")
    (root / "etc" / "NetworkManager").mkdir()
    return root


def recipe(lab, root: Path, *arguments: str) -> subprocess.CompletedProcess:
    return lab.gateway().run(
        [
            "env",
            f"PATH={BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "sh",
            str(RECIPE),
            "--root",
            str(root),
            *arguments,
        ],
        check=False,
    )


def hostapd_parse(lab, config: Path) -> str:
    """hostapd's output on C{config}: it parses the file, then fails at the (absent) radio."""
    result = lab.gateway().run(["timeout", "10", "hostapd", "-d", str(config)], check=False)
    return result.stdout + result.stderr


def test_the_recipe_writes_valid_files_once_refuses_and_removes(lab) -> None:
    lab.internet()  # the gateway's uplink, "wan"
    root = pi_root(lab.tmp)
    shipped = (root / "etc/portald/portald.yaml").read_text()
    first = recipe(lab, root, *ARGUMENTS, "--passphrase", "lab-secret-1", "--upstream", "198.51.100.53")
    assert first.returncode == 0, first.stdout + first.stderr
    written = sorted(p for p in root.rglob("*") if p.is_file())
    contents = {p: p.read_bytes() for p in written}
    assert "wrote /etc/hostapd/portald.conf" in first.stdout

    # Each file passes its own program's check.
    dnsmasq = subprocess.run(
        ["dnsmasq", "--test", f"--conf-file={root / 'etc/dnsmasq.d/portald.conf'}"],
        capture_output=True,
        text=True,
    )
    assert "syntax check OK" in dnsmasq.stderr, dnsmasq.stderr
    nat = lab.gateway().run(["nft", "-c", "-f", str(root / "etc/portald/nat.nft")], check=False)
    assert nat.returncode == 0, nat.stderr
    parsed = hostapd_parse(lab, root / "etc/hostapd/portald.conf")
    assert "errors found in configuration file" not in parsed, parsed
    assert "nl80211" in parsed, parsed  # it got past the file, to the driver
    # ... and hostapd's check would see a broken file.
    broken = lab.tmp / "broken.conf"
    broken.write_text((root / "etc/hostapd/portald.conf").read_text().replace("hw_mode=g", "hw_mode=q"))
    assert "errors found in configuration file" in hostapd_parse(lab, broken)
    check = subprocess.run(
        [str(BIN / "twistd"), "portald", "--check", "--config", str(root / "etc/portald/portald.yaml")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load((root / "etc/portald/portald.yaml").read_text())
    assert config["portal"]["interface"] == "lan" and config["dns"]["upstream"] == ["198.51.100.53"]
    assert (
        "unmanaged-devices=interface-name:lan"
        in (root / "etc/NetworkManager/conf.d/portald-unmanaged.conf").read_text()
    )

    # Idempotent: the same run again writes nothing.
    again = recipe(lab, root, *ARGUMENTS, "--passphrase", "lab-secret-1", "--upstream", "198.51.100.53")
    assert again.returncode == 0 and again.stdout.strip() == "setup-hotspot: nothing changed", again.stdout
    assert {p: p.read_bytes() for p in written} == contents

    # Refusals, with what is wrong, before anything is written.
    missing = recipe(lab, root, "--lan", "wlan0", "--uplink", "wan", "--ssid", "x", "--country", "GB")
    assert missing.returncode == 2 and "no network interface 'wlan0'" in missing.stderr, missing.stderr
    assert "lan" in missing.stderr.split("lists:")[1]
    no_country = recipe(lab, root, "--lan", "lan", "--uplink", "wan", "--ssid", "x")
    assert no_country.returncode == 2 and "--country CC is required" in no_country.stderr
    assert {p: p.read_bytes() for p in written} == contents

    # Reversible.
    removed = recipe(lab, root, "--remove")
    assert removed.returncode == 0, removed.stderr
    assert sorted(p for p in root.rglob("*") if p.is_file()) == [root / "etc/portald/portald.yaml"]
    assert (root / "etc/portald/portald.yaml").read_text() == shipped
    assert recipe(lab, root, "--remove").stdout.strip() == "nothing to remove"


def test_the_recipe_s_dnsmasq_portald_and_nat_let_a_phone_in(lab) -> None:
    net = start_internet(lab)
    root = pi_root(lab.tmp)
    done = recipe(lab, root, *ARGUMENTS, "--upstream", net.dns)
    assert done.returncode == 0, done.stdout + done.stderr

    # The recipe's dnsmasq file as the lab's DHCP server (only the lease
    # file moved into the test's directory).
    lease_file = lab.tmp / "dnsmasq.leases"
    conf = lab.tmp / "recipe-dnsmasq.conf"
    conf.write_text(
        re.sub(
            r"^dhcp-leasefile=.*$",
            f"dhcp-leasefile={lease_file}",
            (root / "etc/dnsmasq.d/portald.conf").read_text(),
            flags=re.M,
        )
    )
    dnsmasq = lab.gateway().spawn(
        ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--user=root", "--group=root",
         f"--pid-file={lab.tmp / 'dnsmasq.pid'}", "--log-facility=-"],
        name="dnsmasq",
    )  # fmt: skip
    wait_for(lambda: lease_file.exists() or not dnsmasq.running(), 10, what="dnsmasq to start")
    if not dnsmasq.running():
        raise LabError(f"dnsmasq exited at start:\n{dnsmasq.log()}")

    # The recipe's nat.nft on the uplink; its portald.yaml, with the lab's
    # places for what would be on the Pi's disk.
    lab.gateway().run(["nft", "-f", str(root / "etc/portald/nat.nft")])
    config = yaml.safe_load((root / "etc/portald/portald.yaml").read_text())
    config["leases"]["sources"] = [{"format": "dnsmasq", "path": str(lease_file)}]
    config["leases"]["poll_interval"] = "1s"
    config["firewall"]["table"] = f"{lab.prefix}_portald"
    config["state"]["database"] = str(lab.tmp / "portald" / "sessions.sqlite3")
    config["control"]["socket"] = str(lab.tmp / "portald" / "control.sock")
    config["portal"]["venue"] = "Lab Café"
    path = lab.tmp / "portald.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    portald = Portald(lab, path)
    portald.start()

    phone = lab.client("c1")
    phone.requested_options.append("default-url")
    guest = Guest(phone, "phone")
    address = guest.join()
    assert 10 <= int(address.split(".")[-1]) <= 254
    leases = (lab.tmp / "c1-dhclient.leases").read_text()
    assert 'option default-url "http://portal.example/api/captive";' in leases, leases
    assert f"option domain-name-servers {GATEWAY_ADDRESS};" in leases
    wait_for(lambda: "csrf" in guest.get("http://portal.example/", quiet=True).body, 10, what="the lease")
    guest.assert_captive()
    guest.sign_in(accept="yes")
    guest.assert_online()
    # Out through the uplink under the gateway's address: the masquerade counted it.
    table = lab.gateway().run(["nft", "list", "table", "ip", "portald_nat"]).stdout
    assert re.search(
        r'oifname "wan" ip saddr 192.0.2.0/24 counter packets [1-9]\d* bytes \d+ masquerade', table
    ), table
