"""
``portald-ctl`` as an operator runs it: the console script against a real
``twistd portald`` on the development configuration, and against sockets
with nobody behind them.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemon_support import READY, ROOT, Twistd, ask, dev_config, ports_of

CTL = ROOT / ".venv" / "bin" / "portald-ctl"
# etc/dev/dnsmasq.leases: 127.0.0.1 is this MAC.
DEV_MAC = "02:00:00:00:00:01"


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CTL), *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("ctl")
    path = dev_config(tmp_path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for(READY)
        yield path, twistd
    finally:
        twistd.stop()


def test_status_in_words_and_in_json(daemon) -> None:
    path, _ = daemon
    done = ctl("--config", str(path), "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("portald ")
    assert "firewall  none: nothing enforced" in done.stdout
    assert "dnsmasq.leases (dnsmasq): good, 1 lease" in done.stdout
    done = ctl("--config", str(path), "--json", "status")
    assert done.returncode == 0
    status = json.loads(done.stdout)
    assert status["devices_known"] == 1 and status["health"]["firewall"] == {
        "backend": "none",
        "enforced": False,
    }


def test_auth_clients_extend_deauth_round_trip(daemon) -> None:
    path, _ = daemon
    _, http_port = ports_of(path)
    done = ctl("--config", str(path), "auth", "127.0.0.1", "--duration", "2h", "--note", "front desk test")
    assert (done.returncode, done.stdout) == (0, f"{DEV_MAC} (127.0.0.1) is signed in by staff for 2h00m\n")
    # The guest's side agrees: online.
    status, _, _, _ = ask(http_port, "GET", "example.com", "/")
    assert status == 200
    done = ctl("--config", str(path), "clients")
    assert done.returncode == 0
    heading, row = done.stdout.splitlines()
    assert heading.split()[:4] == ["MAC", "IP", "HOSTNAME", "METHOD"]
    assert row.split()[:4] == [DEV_MAC, "127.0.0.1", "this-computer", "staff"]
    rows = json.loads(ctl("--config", str(path), "--json", "clients").stdout)
    assert [(r["mac"], r["method"], r["signed_in"]) for r in rows] == [(DEV_MAC, "staff", True)]
    done = ctl("--config", str(path), "extend", DEV_MAC, "30m")
    # A moment of the 2h has gone by since.
    assert done.returncode == 0
    assert done.stdout in (
        f"{DEV_MAC}'s session now ends in 2h30m\n",
        f"{DEV_MAC}'s session now ends in 2h29m\n",
    )
    done = ctl("--config", str(path), "deauth", DEV_MAC)
    assert (done.returncode, done.stdout) == (0, f"{DEV_MAC} (127.0.0.1): session ended by staff\n")
    # The portal tells the guest why.
    status, _, _, body = ask(http_port, "GET", "portal.example", "/")
    assert status == 200 and "because the network's staff ended it" in body
    assert ctl("--config", str(path), "clients").stdout.startswith("no device is signed in")


def test_refusals_exit_1_with_portalds_reason(daemon) -> None:
    path, _ = daemon
    done = ctl("--config", str(path), "deauth", "192.0.2.77")
    assert done.returncode == 1
    assert done.stderr == "portald-ctl: no device has the address 192.0.2.77 (no DHCP lease for it)\n"
    done = ctl("--config", str(path), "auth", DEV_MAC, "--duration", "forever")
    assert done.returncode == 1 and "'forever' is not a duration" in done.stderr
    done = ctl("--config", str(path), "allow", "nonsense")
    assert done.returncode == 1 and done.stderr.startswith("portald-ctl: not a MAC address: 'nonsense'")


def test_allow_and_disallow(daemon) -> None:
    path, _ = daemon
    _, http_port = ports_of(path)
    assert ctl("--config", str(path), "allow", DEV_MAC, "--note", "the till").returncode == 0
    # Always allowed: online without a session.
    assert ask(http_port, "GET", "example.com", "/")[0] == 200
    assert "the till" in ctl("--config", str(path), "allowed").stdout
    assert ctl("--config", str(path), "disallow", DEV_MAC).returncode == 0
    assert ask(http_port, "GET", "example.com", "/")[0] == 511


def test_a_missing_socket_says_portald_is_not_running(tmp_path: Path) -> None:
    missing = tmp_path / "control.sock"
    done = ctl("--socket", str(missing), "status")
    assert done.returncode == 2
    assert done.stderr == (
        f"portald-ctl: portald is not running, or control.socket is elsewhere: {missing} does not exist\n"
    )


def test_a_socket_nobody_listens_on(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()  # bound, never listening: what a killed daemon leaves
    done = ctl("--socket", str(path), "clients")
    assert (done.returncode, done.stderr) == (
        2,
        f"portald-ctl: portald is not running: nothing answers on {path}\n",
    )


def test_a_broken_configuration_is_named(tmp_path: Path) -> None:
    path = tmp_path / "portald.yaml"
    path.write_text("portal: {address: 192.0.2.1}\n")
    done = ctl("--config", str(path), "status")
    assert done.returncode == 2
    assert done.stderr.startswith(f"portald-ctl: cannot find the control socket: {path}")
    assert "(or give --socket PATH)" in done.stderr


def test_the_socket_is_group_only_and_removed_at_stop(tmp_path: Path) -> None:
    path = dev_config(tmp_path)
    twistd = Twistd.start(path, cwd=tmp_path)
    try:
        twistd.wait_for(READY)
        sock = tmp_path / "control.sock"
        assert sock.is_socket() and sock.stat().st_mode & 0o777 == 0o660
    finally:
        twistd.stop(signal.SIGTERM)
    assert not sock.exists()
