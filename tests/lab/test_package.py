"""
The Debian package, as an operator gets it: ``make deb``, then installed
into a fresh Debian 12 root (mmdebstrap) and used there.

    install     dpkg -i: the user portald, the files and their modes, the
                conffile, the units enabled; ``twistd portald --check`` on
                the shipped configuration; ``portald-ctl --help``;
                ``systemd-analyze verify`` on both units; lintian
    remove      the environment gone, the configuration, state and user kept
    purge       all of it gone
    in the lab  the installed environment's portald runs in the gateway with
                the unit's own command lines (ExecStartPre, then ExecStart),
                as the user portald with the unit's capabilities only; a
                guest signs in and is online; the package is upgraded (stop,
                dpkg -i, start) and the guest is still online
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.debian_root import DebianRoot, as_unit_argv, build_deb, repack, unit_settings
from tests.lab import netlab
from tests.lab.daemon import Portald, lab_config
from tests.lab.guest import Guest
from tests.lab.internet import start_internet
from tests.lab.netlab import wait_for

UNIT = "/lib/systemd/system/portald.service"
BOOT_UNIT = "/lib/systemd/system/portald-firewall.service"
VENV = "/opt/venvs/portald"


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture
def root(tmp_path: Path, deb: Path) -> Iterator[DebianRoot]:
    debian = DebianRoot.unpack(tmp_path / "root")
    try:
        yield debian
    finally:
        shutil.rmtree(debian.path, ignore_errors=True)


def test_lintian_finds_nothing_unexplained(deb: Path) -> None:
    result = subprocess.run(
        ["lintian", "--fail-on", "error,warning", str(deb)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")], result.stdout


def test_install_check_remove_purge(root: DebianRoot, deb: Path) -> None:
    root.run(["dpkg", "-i", root.copy_in(deb)])

    # The system user and its group; nobody logs in as it.
    user = root.run(["getent", "passwd", "portald"]).stdout.strip().split(":")
    assert user[5] == "/var/lib/portald" and user[6] == "/usr/sbin/nologin", user
    assert int(user[2]) < 1000, user
    assert root.run(["getent", "group", "portald"]).returncode == 0

    # The configuration: a conffile, readable by portald, not by everyone.
    stat = root.run(["stat", "-c", "%U:%G %a", "/etc/portald/portald.yaml"]).stdout.split()
    assert stat == ["root:portald", "640"], stat
    conffiles = root.run(["dpkg-query", "-W", "-f", "${Conffiles}", "portald"]).stdout
    assert "/etc/portald/portald.yaml" in conffiles
    assert root.file("/usr/lib/sysctl.d/60-portald.conf").read_text().count("net.ipv4.ip_forward = 1") == 1
    assert root.run(["readlink", "-f", "/usr/bin/portald-ctl"]).stdout.strip() == f"{VENV}/bin/portald-ctl"
    for unit, target in (("portald", "multi-user"), ("portald-firewall", "sysinit")):
        assert root.file(f"/etc/systemd/system/{target}.target.wants/{unit}.service").is_symlink(), unit
    # The plugin cache is written at install: portald cannot write /opt.
    assert list(root.file(VENV).glob("lib/python3*/site-packages/twisted/plugins/dropin.cache"))

    # The shipped configuration is valid as it is; the commands answer.
    root.run([f"{VENV}/bin/twistd", "portald", "--check", "--config", "/etc/portald/portald.yaml"])
    assert "usage: portald-ctl" in root.run(["portald-ctl", "--help"]).stdout
    verify = root.run(["systemd-analyze", "verify", UNIT, BOOT_UNIT], check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr

    # State portald made while it ran, and an operator's edit of the conffile.
    root.run(["install", "-d", "-o", "portald", "-g", "portald", "-m", "0750", "/var/lib/portald"])
    root.run(["install", "-o", "portald", "-g", "portald", "/dev/null", "/var/lib/portald/sessions.sqlite3"])
    config = root.file("/etc/portald/portald.yaml")
    config.write_text(config.read_text().replace("venue: Café Example", "venue: Hotel Lab"))

    root.run(["dpkg", "--remove", "portald"])
    assert not root.file(VENV).exists()
    assert not root.file("/usr/bin/portald-ctl").exists()
    assert "venue: Hotel Lab" in config.read_text()  # a conffile stays until purge
    assert root.file("/var/lib/portald/sessions.sqlite3").exists()
    assert root.run(["getent", "passwd", "portald"], check=False).returncode == 0

    root.run(["dpkg", "--purge", "portald"])
    assert not root.file("/etc/portald").exists()
    assert not root.file("/var/lib/portald").exists()
    assert root.run(["getent", "passwd", "portald"], check=False).returncode == 2
    assert root.run(["getent", "group", "portald"], check=False).returncode == 2


class PackagedPortald(Portald):
    """The installed package's portald in the lab's gateway, as its unit runs it."""

    def __init__(self, lab: netlab.Lab, root: DebianRoot) -> None:
        super().__init__(lab, root.file("/etc/portald/portald.yaml"))
        self.root = root
        self.settings = unit_settings(root.file(UNIT))
        # The lab's files (the lease file) at /srv/lab inside the root.
        lab.tmp.chmod(0o755)

    def _as_unit(self, command: str) -> list[str]:
        return self.root.chroot_argv(as_unit_argv(self.settings, command), binds=[(self.lab.tmp, "/srv/lab")])

    def command(self) -> list[str]:
        (start,) = self.settings["ExecStart"]
        return self._as_unit(start)

    def start(self, timeout: float = 30.0) -> None:
        # What systemd makes for the unit (StateDirectory, RuntimeDirectory),
        # then ExecStartPre, then ExecStart.
        for directory in ("/var/lib/portald", "/run/portald"):
            self.root.run(["install", "-d", "-o", "portald", "-g", "portald", "-m", "0750", directory])
        (before,) = self.settings["ExecStartPre"]
        closing = self.lab.gateway().run(self._as_unit(before), check=False)
        assert closing.returncode == 0, closing.stdout + closing.stderr
        super().start(timeout)


def test_the_packaged_portald_signs_a_guest_in_and_keeps_them_through_an_upgrade(
    lab, root: DebianRoot, deb: Path, tmp_path: Path
) -> None:
    root.run(["dpkg", "-i", root.copy_in(deb)])
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    config = lab_config(
        lab, lease_file=Path("/srv/lab") / dhcp.lease_file.name, upstream=[net.dns], settings={}
    )
    # The package's own places: sessions in the StateDirectory, the control
    # socket in the RuntimeDirectory.
    config["state"] = {"database": "/var/lib/portald/sessions.sqlite3"}
    config["control"] = {"socket": "/run/portald/control.sock"}
    root.file("/etc/portald/portald.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    )

    portald = PackagedPortald(lab, root)
    portald.start()
    process = portald.process
    assert process is not None
    status = (Path("/proc") / str(process.pid) / "status").read_text()
    # Running as portald (not root), with exactly the unit's two capabilities.
    uid = root.run(["id", "-u", "portald"]).stdout.strip()
    assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status, status
    assert "CapEff:\t0000000000001400" in status, status  # CAP_NET_BIND_SERVICE | CAP_NET_ADMIN
    assert "NoNewPrivs:\t1" in status

    guest = Guest(lab.client("c1"), "phone")
    guest.join()
    wait_for(lambda: "csrf" in guest.get("http://portal.example/", quiet=True).body, 10, what="the lease")
    guest.assert_captive()
    guest.sign_in(accept="yes")
    guest.assert_online()

    # An upgrade as the maintainer scripts do it: stop, replace, start.
    portald.stop()
    later = repack(deb, "0.1.0+1", tmp_path)
    root.run(["dpkg", "-i", root.copy_in(later)])
    assert root.run(["dpkg-query", "-W", "-f", "${Version}", "portald"]).stdout == "0.1.0+1"
    assert "venue: Lab Café" in root.file("/etc/portald/portald.yaml").read_text()  # the operator's file kept
    portald.start()
    guest.assert_online()
    portald.stop()
    log = process.log() + (portald.process.log() if portald.process else "")
    assert "Traceback" not in log, log


RECIPE = Path(__file__).parent.parent.parent / "packaging" / "raspberry-pi" / "setup-hotspot"
HOTSPOT_UNITS = ("portald-lan", "portald-nat", "hostapd@portald", "dnsmasq", "portald")


def test_the_recipe_on_a_fresh_debian_installs_the_package_and_enables_the_hotspot(
    lab, root: DebianRoot, deb: Path
) -> None:
    lab.internet()  # the gateway's uplink, "wan"; its bridge "lan" stands for wlan0
    package = root.copy_in(deb)
    script = root.copy_in(RECIPE)
    arguments = ["--lan", "lan", "--uplink", "wan", "--ssid", "Lab Guest", "--country", "GB",
                 "--upstream", "198.51.100.53"]  # fmt: skip

    def hotspot(*extra: str) -> subprocess.CompletedProcess:
        return root.run(["sh", script, *extra], check=False, netns=lab.gateway().name)

    done = hotspot("--deb", package, *arguments)
    assert done.returncode == 0, done.stdout + done.stderr
    assert root.run(["dpkg-query", "-W", "-f", "${Status}", "portald"]).stdout == "install ok installed"
    wants = root.file("/etc/systemd/system/multi-user.target.wants")
    for unit in HOTSPOT_UNITS:
        assert (wants / f"{unit}.service").is_symlink(), unit
    assert "interface=lan" in root.file("/etc/dnsmasq.d/portald.conf").read_text()
    stat = root.run(["stat", "-c", "%U:%G %a", "/etc/portald/portald.yaml"]).stdout.split()
    assert stat == ["root:portald", "640"], stat
    # The units the recipe wrote are valid systemd units.
    verify = root.run(
        ["systemd-analyze", "verify", "/etc/systemd/system/portald-lan.service",
         "/etc/systemd/system/portald-nat.service"],
        check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr

    again = hotspot("--deb", package, *arguments)
    assert again.returncode == 0 and "setup-hotspot: nothing changed" in again.stdout, again.stdout
    assert "wrote " not in again.stdout

    removed = hotspot("--remove")
    assert removed.returncode == 0, removed.stderr
    for unit in HOTSPOT_UNITS[:3]:
        assert not (wants / f"{unit}.service").is_symlink(), unit
    assert not root.file("/etc/dnsmasq.d/portald.conf").exists()
    assert "interface: wlan0" in root.file("/etc/portald/portald.yaml").read_text()
