"""The real daemon runs in the lab's gateway as an operator runs it."""

from __future__ import annotations

from tests.lab.daemon import start_portald
from tests.lab.internet import start_internet


def test_portald_starts_restarts_and_stops_in_the_gateway(lab) -> None:
    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    first = portal.process
    assert "portald for 'Lab Café'" in portal.log()
    portal.restart()
    assert not first.running() and portal.process.running()
    assert "Traceback" not in first.log() + portal.log()
    portal.stop()
    assert not portal.process.running()
