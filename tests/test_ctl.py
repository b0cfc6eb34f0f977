"""
``portald-ctl`` as an operator runs it: the console script against a real
``twistd portald`` on the development configuration, and against sockets
with nobody behind them.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemon_support import READY, ROOT, Twistd, ask, dev_config, ports_of, running

CTL = ROOT / ".venv" / "bin" / "portald-ctl"
# etc/dev/dnsmasq.leases: 127.0.0.1 is this MAC.
DEV_MAC = "02:00:00:00:00:01"


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CTL), *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("ctl")
    path = dev_config(tmp_path, vouchers={"wifi": {"ssid": "Dev Guest", "password": "not-a-secret"}})
    with running(path, tmp_path) as twistd:
        yield path, twistd


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


def voucher_sign_in(http_port: int, code: str) -> tuple[int, str]:
    status, _, _, page = ask(http_port, "GET", "portal.example", f"/?voucher={code}")
    assert status == 200 and f'value="{code}"' in page  # the slip's QR code fills it in
    token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
    status, _, _, page = ask(
        http_port, "POST", "portal.example", "/login", {"csrf": token, "method": "voucher", "voucher": code}
    )
    return status, page


def test_a_vouchers_life_from_the_desk_to_the_guest_and_back(daemon, tmp_path: Path) -> None:
    path, twistd = daemon
    _, http_port = ports_of(path)
    sheet = tmp_path / "slips.html"
    done = ctl("--config", str(path), "vouchers", "create", "--count", "3", "--duration", "1d",
               "--devices", "2", "--quota", "2GB", "--note", "front desk", "--sheet", str(sheet))  # fmt: skip
    assert done.returncode == 0, done.stderr
    heading, *rows, summary, told = done.stdout.splitlines()
    assert told == f"the sheet is in {sheet}: open it in a browser and print it"
    assert heading.split() == ["CODE", "BATCH", "STATE", "DURATION", "DEVICES", "QUOTA", "ENDS", "NOTE"]
    codes = [row.split()[0] for row in rows]
    assert len(codes) == 3 and all(re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{2}", c) for c in codes)
    assert all(row.split()[2:5] == ["unused", "1d00h", "0/2"] and row.endswith("front desk") for row in rows)
    assert summary.startswith("3 vouchers made in batch ") and "shown only now" in summary
    batch = summary.split("batch ")[1].split()[0]
    page = sheet.read_text()
    assert all(f'data-code="{code}"' in page for code in codes)
    assert f'data-qr="http://portal.example:{http_port}/?voucher={codes[0]}"' in page
    assert 'data-qr="WIFI:T:WPA;S:Dev Guest;P:not-a-secret;;"' in page

    # The guest types the first code (in lower case, as guests do).
    status, page = voucher_sign_in(http_port, codes[0].lower())
    assert status == 200 and "You are online" in page, page
    status, _, _, page = ask(http_port, "GET", "portal.example", "/status")
    assert "<dd>voucher</dd>" in page and "2.0 GB" in page
    twistd.wait_for(f"authorized {DEV_MAC} (127.0.0.1) by voucher")
    listing = json.loads(ctl("--config", str(path), "--json", "vouchers", "list", "--batch", batch).stdout)
    assert sorted(v["state"] for v in listing) == ["active", "unused", "unused"]
    done = ctl("--config", str(path), "vouchers", "show", codes[0])
    assert done.returncode == 0 and " active " in done.stdout and f"on {DEV_MAC}" in done.stdout
    clients = json.loads(ctl("--config", str(path), "--json", "clients").stdout)
    assert [(c["mac"], c["method"]) for c in clients] == [(DEV_MAC, "voucher")]

    # Withdrawn: the guest is cut off and told why; the code no longer works.
    done = ctl("--config", str(path), "vouchers", "revoke", codes[0])
    assert (done.returncode, done.stdout) == (0, "1 voucher withdrawn\n")
    assert ask(http_port, "GET", "example.com", "/")[0] == 511
    status, page = voucher_sign_in(http_port, codes[0])
    assert "This code has been withdrawn" in page
    done = ctl("--config", str(path), "vouchers", "revoke", "--batch", batch)
    assert (done.returncode, done.stdout) == (0, "2 vouchers withdrawn (1 already were)\n")
    listing = json.loads(
        ctl("--config", str(path), "--json", "vouchers", "list", "--state", "revoked").stdout
    )
    assert {v["batch"] for v in listing} == {batch} and len(listing) == 3


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["create", "--count", "0", "--duration", "1d"], "count: expected 1 to 10000 vouchers, not 0"),
        (["create", "--duration=-1h"], "'-1h' is not a duration"),
        (["create", "--duration", "1d", "--devices", "0"], "devices: expected 1 to 100, not 0"),
        (["create", "--duration", "1d", "--quota", "lots"], "'lots' is not a data amount"),
        (
            ["create", "--duration", "1d", "--valid-until", "2001-01-01"],
            "valid-until: expected a time in the future",
        ),
        (["show", "X" * 10_000], "no such voucher"),
        (["revoke", "--batch", "no-such-batch"], "no voucher in batch 'no-such-batch'"),
        (["list", "--state", "sleepy"], "state: expected one of unused, active, used-up, expired, revoked"),
    ],
)
def test_bad_voucher_requests_say_why_and_make_nothing(
    daemon, args: list[str], error: str, tmp_path: Path
) -> None:
    path, _ = daemon
    before = ctl("--config", str(path), "--json", "vouchers", "list").stdout
    sheet = tmp_path / "never.html"
    extra = ["--sheet", str(sheet)] if args[0] == "create" else []
    done = ctl("--config", str(path), "vouchers", *args, *extra)
    assert done.returncode == 1 and error in done.stderr, done.stderr
    assert ctl("--config", str(path), "--json", "vouchers", "list").stdout == before
    assert not sheet.exists()


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


def test_dhcp_options_come_from_the_file_alone(tmp_path: Path) -> None:
    path = dev_config(tmp_path, http={"tls": {"certificate": "c.pem", "key": "k.pem", "port": 443}})
    done = ctl("--config", str(path), "dhcp-options")  # no portald running: the file is enough
    assert done.returncode == 0, done.stderr
    uri = "https://portal.example/api/captive"
    for line in (
        f'dhcp-option-force=114,"{uri}"',
        f'dhcp-option=option6:103,"{uri}"',
        f'option default-url "{uri}";',
        f'{{ "name": "v4-captive-portal", "data": "{uri}" }}',
        f'{{ "name": "v6-captive-portal", "data": "{uri}" }}',
        f'AdvCaptivePortalAPI "{uri}";',
    ):
        assert line in done.stdout.splitlines()
    assert "warning" not in done.stdout
    plain = ctl("--config", str(dev_config(tmp_path)), "dhcp-options")
    assert "# warning: http.tls is not set" in plain.stdout
    assert ctl("--config", str(tmp_path / "missing.yaml"), "dhcp-options").returncode == 1
