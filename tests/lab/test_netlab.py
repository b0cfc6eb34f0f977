"""The lab harness itself: topology, DHCP, cleanup and the stale sweep."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.lab import netlab

pytestmark = pytest.mark.lab


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {entry["name"] for entry in json.loads(out or "[]")}


def test_topology_routes_lan_to_internet(lab):
    """A static client reaches the gateway and, forwarded, an internet host."""
    client = lab.client("c1", address="192.0.2.10")
    lab.internet()
    lab.add_internet_host("203.0.113.80")
    client.run(["ping", "-c1", "-W2", netlab.GATEWAY_ADDRESS])
    client.run(["ping", "-c1", "-W2", "203.0.113.80"])
    assert client.mac("eth0") == "02:00:00:00:00:01"
    assert client.resolv_conf.read_text() == "nameserver 192.0.2.1\n"
    # ip netns exec shows the namespace's own resolv.conf.
    assert client.run(["cat", "/etc/resolv.conf"]).stdout == "nameserver 192.0.2.1\n"


def test_dnsmasq_gives_dhclient_a_lease(lab):
    dhcp = lab.dnsmasq_dhcp()
    client = lab.client("c1")
    client.dhclient()
    address = client.address()
    assert address is not None and address.startswith("192.0.2.")
    lease_line = netlab.wait_for(
        lambda: [line for line in dhcp.lease_file.read_text().splitlines() if f" {address} " in line],
        5,
        what="the lease in dnsmasq's file",
    )
    assert client.mac_address in lease_line[0]
    assert " phone-c1 " in lease_line[0]
    client.run(["ping", "-c1", "-W2", netlab.GATEWAY_ADDRESS])
    client.release()
    assert client.address() is None


def test_cleanup_removes_namespaces_processes_and_netns_etc(tmp_path):
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = netlab.Lab(tmp_path)
    client = lab.client("c1", address="192.0.2.11")
    sleeper = lab.gateway().spawn(["sleep", "60"], name="sleeper")
    names = {ns.name for ns in lab.namespaces}
    assert names <= _namespaces()
    lab.cleanup()
    assert not names & _namespaces()
    assert not client.resolv_conf.parent.exists()
    assert not sleeper.running()


def test_sweep_removes_only_dead_runs(tmp_path):
    reason = netlab.unavailable_reason()
    if reason:
        pytest.skip(reason)
    # A PID that is certainly dead: a child we started and reaped.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"pd{dead.pid}n1-gw"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    (netlab.NETNS_ETC / stale).mkdir(parents=True, exist_ok=True)
    live = netlab.Lab(tmp_path)
    try:
        live.gateway()
        removed = netlab.sweep_stale()
        assert stale in removed
        assert stale not in _namespaces()
        assert not (netlab.NETNS_ETC / stale).exists()
        assert live.gateway().name in _namespaces()
        assert not any(name.startswith(f"pd{os.getpid()}n") for name in removed)
    finally:
        live.cleanup()
        subprocess.run(["ip", "netns", "delete", stale], check=False, capture_output=True)
