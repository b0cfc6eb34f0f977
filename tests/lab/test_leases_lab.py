"""
Real DHCP servers write the lease files; the real watcher follows them.

dnsmasq, ISC dhcpd and Kea each serve a client namespace running dhclient.
The watcher (``python -m portald.cli.leases --follow``: the LeaseWatcher on
the real reactor with inotify) runs in the gateway; its poll is set to 30 s
so that only inotify can deliver within the 1 s the issue asks for.  The
measured lease -> map latency (from the server's write of the lease file to
the watcher's new map) is printed and recorded as a test property.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.lab import netlab

pytestmark = pytest.mark.lab

POLL = "30"  # the backstop, far slower than the 1 s budget


class FollowedLeases:
    """The watcher's output: one JSON map per change, each with its wall-clock time."""

    def __init__(self, lab: netlab.Lab, fmt: str, lease_file: Path, *options: str, poll: str = POLL) -> None:
        self.process = lab.gateway().spawn(
            [
                sys.executable,
                "-m",
                "portald.cli.leases",
                "--follow",
                "--json",
                "--poll-interval",
                poll,
                *options,
                fmt,
                str(lease_file),
            ],
            name=f"leasetool-{fmt}",
        )
        netlab.wait_for(lambda: self.maps() or not self.process.running(), 15, what="the watcher's first map")
        assert self.process.running(), self.process.log()
        assert "with inotify" in self.process.log()

    def maps(self) -> list[dict]:
        return [json.loads(line) for line in self.process.log().splitlines() if line.startswith('{"time"')]

    def latest(self) -> dict:
        return self.maps()[-1]["leases"]

    def wait_until(self, predicate, timeout: float, what: str, *, after: int) -> dict:
        """
        The first map after the first C{after} ones that satisfies C{predicate},
        waiting at most C{timeout} seconds.
        """

        def found():
            return next((entry for entry in self.maps()[after:] if predicate(entry["leases"])), None)

        return netlab.wait_for(found, timeout, what=what)


def mtime(path: Path) -> float:
    return os.stat(path).st_mtime_ns / 1e9


def start_server(lab: netlab.Lab, fmt: str, lease_time: int) -> netlab.DHCPServer:
    if fmt == "dnsmasq":
        return lab.dnsmasq_dhcp(lease_time=f"{lease_time}s")
    if fmt == "isc-dhcpd":
        return lab.isc_dhcpd(lease_time=lease_time)
    return lab.kea_dhcp4(lease_time=lease_time)


def granted(lab, fmt: str, record_property, *, lease_time: int = 120):
    """Server, watcher and a client with a lease; the client's mapping checked within 1 s."""
    server = start_server(lab, fmt, lease_time)
    followed = FollowedLeases(lab, fmt, server.lease_file)
    client = lab.client("c1")
    mac = client.mac("eth0")
    seen = len(followed.maps())
    client.dhclient()
    ip = client.address()
    bound = time.time()
    # Within 1 s of the lease: only the inotify path can do that (poll: 30 s).
    entry = followed.wait_until(
        lambda leases: ip in leases, 1.0, what=f"{ip} in the watcher's map", after=seen
    )
    assert entry["leases"][ip]["mac"] == mac
    assert entry["leases"][ip]["hostname"] == "phone-c1"
    latency = entry["time"] - mtime(server.lease_file)
    record_property(f"{fmt}_lease_to_map_seconds", round(latency, 4))
    print(
        f"\n{fmt}: lease file written -> map {latency * 1000:.0f} ms; client bound -> map {(entry['time'] - bound) * 1000:.0f} ms"
    )
    return server, followed, client, ip


@pytest.mark.parametrize("fmt", ["dnsmasq", "isc-dhcpd", "kea"])
def test_lease_is_mapped_at_once_and_forgotten_on_release(lab, fmt: str, record_property) -> None:
    server, followed, client, ip = granted(lab, fmt, record_property)
    seen = len(followed.maps())
    client.release()
    followed.wait_until(lambda leases: leases == {}, 2.0, what=f"{ip} forgotten after release", after=seen)
    assert server.process.running()
    assert "Traceback" not in followed.process.log()


@pytest.mark.parametrize("fmt", ["isc-dhcpd", "kea"])
def test_lease_is_forgotten_when_it_expires(lab, fmt: str, record_property) -> None:
    """The client vanishes without a release; its 4 s lease runs out."""
    lease_time = 4
    server, followed, client, ip = granted(lab, fmt, record_property, lease_time=lease_time)
    assert client.dhclient_process is not None
    seen = len(followed.maps())
    client.dhclient_process.popen.send_signal(signal.SIGKILL)  # no DHCPRELEASE
    client.dhclient_process.popen.wait(5)
    gone = followed.wait_until(
        lambda leases: ip not in leases, lease_time + 3, what=f"{ip} forgotten on expiry", after=seen
    )
    assert "lease expired" in followed.process.log()
    assert gone["leases"] == {}
    if fmt == "kea":
        # Kea then records the reclamation (state 2); the map stays empty.
        netlab.wait_for(
            lambda: (
                f"{ip}," in server.lease_file.read_text().splitlines()[-1]
                and server.lease_file.read_text().splitlines()[-1].split(",")[9] == "2"
            ),
            5,
            what="Kea's expired-reclaimed row",
        )
        time.sleep(0.3)  # bounded: a debounce and more
        assert followed.latest() == {}


def test_isc_dhcpd_renaming_its_file_over_the_old_one_keeps_the_map(lab, record_property) -> None:
    """dhcpd rewrites its lease file at start as a new file renamed over the old one."""
    server, followed, client, ip = granted(lab, "isc-dhcpd", record_property)
    inode = os.stat(server.lease_file).st_ino
    server.stop()
    restarted = lab.isc_dhcpd()
    assert os.stat(restarted.lease_file).st_ino != inode  # replaced by rename
    maps_before = len(followed.maps())
    time.sleep(0.5)  # bounded: let the watcher see the rename
    assert followed.latest()[ip]["mac"] == client.mac("eth0")
    # The directory watch survived the rename: the release is seen at once.
    client.release()
    followed.wait_until(
        lambda leases: ip not in leases, 2.0, what=f"{ip} forgotten after release", after=maps_before
    )


def test_dnsmasq_rewrite_in_place_with_two_clients(lab, record_property) -> None:
    """dnsmasq truncates and rewrites one file for every change: two clients, both mapped, one released."""
    server, followed, first, first_ip = granted(lab, "dnsmasq", record_property)
    inode = os.stat(server.lease_file).st_ino
    second = lab.client("c2")
    seen = len(followed.maps())
    second.dhclient()
    second_ip = second.address()
    followed.wait_until(
        lambda leases: {first_ip, second_ip} <= set(leases), 1.0, what="both clients mapped", after=seen
    )
    seen = len(followed.maps())
    first.release()
    final = followed.wait_until(
        lambda leases: first_ip not in leases, 2.0, what=f"{first_ip} forgotten", after=seen
    )
    assert final["leases"] == {
        second_ip: {
            "mac": second.mac("eth0"),
            "hostname": "phone-c2",
            "expires": final["leases"][second_ip]["expires"],
        }
    }
    assert os.stat(server.lease_file).st_ino == inode  # rewritten in place, never replaced


def test_neighbour_fallback_maps_a_static_client_from_the_kernel(lab) -> None:
    """A device with a static address has no lease; the gateway's ARP table knows it."""
    server = lab.dnsmasq_dhcp()
    followed = FollowedLeases(lab, "dnsmasq", server.lease_file, "--neighbour-fallback", poll="0.2")
    static = lab.client("c1", address="192.0.2.10")
    seen = len(followed.maps())
    static.run(["ping", "-c1", "-W2", netlab.GATEWAY_ADDRESS])
    entry = followed.wait_until(lambda leases: "192.0.2.10" in leases, 3.0, what="the ARP entry", after=seen)
    assert entry["leases"]["192.0.2.10"]["mac"] == static.mac("eth0")
    assert entry["leases"]["192.0.2.10"]["hostname"] is None


def test_kea_lease_file_cleanup_keeps_the_client_mapped(lab) -> None:
    """
    Kea's LFC moves lease4.csv aside and starts a new one with only its
    header: the watcher reads the older files too, as Kea does.
    """
    server = lab.kea_dhcp4(lfc_interval=1)
    followed = FollowedLeases(lab, "kea", server.lease_file)
    client = lab.client("c1")
    seen = len(followed.maps())
    client.dhclient()
    ip = client.address()
    followed.wait_until(lambda leases: ip in leases, 2.0, what=f"{ip} in the watcher's map", after=seen)
    compacted = server.lease_file.with_name(server.lease_file.name + ".1")
    netlab.wait_for(
        lambda: compacted.exists() and ip not in server.lease_file.read_text(),
        15,
        what="Kea's lease file cleanup to leave lease4.csv without the lease",
    )
    # Nothing is expected to change, so there is no event to wait for: give
    # the watcher (debounce 0.1 s) a second to read the new file.
    time.sleep(1.0)
    assert ip in followed.latest(), followed.process.log()
    assert "lease ended" not in followed.process.log()
