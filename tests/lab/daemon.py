"""
The real portald in the lab's gateway, run as an operator runs it:
``twistd --nodaemon portald --config <generated yaml>``.

    dhcp = lab.dnsmasq_dhcp()
    net = start_internet(lab)
    portal = start_portald(lab, lease_file=dhcp.lease_file, upstream=[net.dns])
    ...
    portal.restart()                    # same config, same database
    portal.stop()                       # also done by the lab's cleanup

The configuration is the lab's: portal 192.0.2.1 on the gateway's bridge
``lan``, DNS on 53 and HTTP on 80 there, sessions in the test's tmp dir.
``settings`` overrides sections key by key (e.g. ``{"auth": {"method":
"access-code", "codes": ["1234"]}}``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.lab.netlab import GATEWAY_ADDRESS, LAN, Lab, LabError, Process, wait_for

TWISTD = Path(sys.executable).parent / "twistd"
READY = "try Portal:"  # logged once the reactor runs, every listener open


def lab_config(
    lab: Lab, *, lease_file: Path, upstream: Sequence[str], settings: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    config: dict[str, dict[str, Any]] = {
        "portal": {
            "address": GATEWAY_ADDRESS,
            "subnets": [str(LAN)],
            "hostname": "portal.example",
            "venue": "Lab Café",
            "interface": "lan",
        },
        "dns": {
            "listen": [GATEWAY_ADDRESS],
            "port": 53,
            "upstream": list(upstream),
            "upstream_timeout": "1s",
        },
        "http": {"listen": GATEWAY_ADDRESS, "port": 80},
        "leases": {"sources": [{"format": "dnsmasq", "path": str(lease_file)}], "poll_interval": "1s"},
        "firewall": {"backend": "nftables", "table": f"{lab.prefix}_portald"},
        "state": {"database": str(lab.tmp / "portald" / "sessions.sqlite3")},
        "control": {"socket": str(lab.tmp / "portald" / "control.sock")},
    }
    for section, values in settings.items():
        config.setdefault(section, {}).update(values)
    return config


class Portald:
    """One portald daemon in the gateway namespace."""

    def __init__(self, lab: Lab, config_path: Path) -> None:
        self.lab = lab
        self.config_path = config_path
        self.process: Process | None = None
        self._starts = 0

    def command(self) -> list[str]:
        """The daemon's command line."""
        return [str(TWISTD), "--nodaemon", "--pidfile=", "portald", "--config", str(self.config_path)]

    def start(self, timeout: float = 20.0) -> None:
        self._starts += 1
        process = self.lab.gateway().spawn(self.command(), name=f"portald{self._starts}")
        self.process = process
        wait_for(lambda: READY in process.log() or not process.running(), timeout, what="portald to start")
        if not process.running():
            raise LabError(f"portald exited at start:\n{process.log()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.process.log() if self.process is not None else ""


def start_portald(
    lab: Lab,
    *,
    lease_file: Path,
    upstream: Sequence[str],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Portald:
    config = lab_config(lab, lease_file=lease_file, upstream=upstream, settings=settings or {})
    path = lab.tmp / "portald.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    portald = Portald(lab, path)
    portald.start()
    return portald
