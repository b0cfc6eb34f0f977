"""
Throwaway network namespaces for the firewall's kernel tests: one empty
namespace (plus, for traffic, a client and a server namespace wired to it).

Everything is named ``pfw<pid>-…`` after the test process, removed at the
end pass or fail, and what a dead earlier run left behind is swept first.
Other test runs on this machine (other PIDs) are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab.netlab import pid_alive

PREFIX = f"pfw{os.getpid()}"
_OURS = re.compile(r"^pfw(\d+)-")
NFT = "/usr/sbin/nft"


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    for program in ("ip", "nft", "conntrack"):
        if shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"needs {program} (make test installs the lab's Debian packages as root)"
    return None


def require_namespaces() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 20.0):
    result = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def _namespaces() -> list[str]:
    listing = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    run(["ip", "netns", "delete", name], check=False)


def sweep_stale() -> None:
    for name in _namespaces():
        match = _OURS.match(name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            delete_namespace(name)


_counter = iter(range(1, 1_000_000))


@contextmanager
def namespace(role: str = "fw") -> Iterator[str]:
    """A fresh, empty namespace, deleted afterwards."""
    require_namespaces()
    sweep_stale()
    name = f"{PREFIX}-{role}{next(_counter)}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        delete_namespace(name)


def in_namespace(name: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


def nft(name: str, *args: str, input: str | None = None, check: bool = True):
    return run(in_namespace(name, [NFT, *args]), input=input, check=check)


def namespaced_helpers(name: str, directory: Path) -> tuple[Path, Path]:
    """
    Executables standing in for /usr/sbin/nft and /usr/sbin/conntrack that run
    the real programs inside namespace C{name}: what firewall.nft and
    firewall.conntrack point at when portald itself runs outside it.
    """
    paths = []
    for program in ("nft", "conntrack"):
        path = directory / f"{program}-in-{name}"
        path.write_text(f'#!/bin/sh\nexec /usr/sbin/ip netns exec {name} /usr/sbin/{program} "$@"\n')
        path.chmod(0o755)
        paths.append(path)
    return paths[0], paths[1]


@contextmanager
def lan(gateway: str) -> Iterator[dict[str, str]]:
    """
    A client and a server namespace wired to C{gateway}::

        [client] eth0 192.0.2.10 ── lan 192.0.2.1 [gateway] wan 198.51.100.1 ── eth0 198.51.100.2 [server]
                                                                       203.0.113.10 on the server's lo
    """
    with namespace("cl") as client, namespace("sv") as server:
        for args in (
            ["ip", "link", "add", "lan", "netns", gateway, "type", "veth", "peer", "eth0", "netns", client],
            ["ip", "link", "add", "wan", "netns", gateway, "type", "veth", "peer", "eth0", "netns", server],
            ["ip", "-n", client, "link", "set", "eth0", "address", "02:00:00:00:00:10"],
            ["ip", "-n", client, "addr", "add", "192.0.2.10/24", "dev", "eth0"],
            ["ip", "-n", client, "link", "set", "eth0", "up"],
            ["ip", "-n", client, "route", "add", "default", "via", "192.0.2.1"],
            ["ip", "-n", gateway, "addr", "add", "192.0.2.1/24", "dev", "lan"],
            ["ip", "-n", gateway, "addr", "add", "198.51.100.1/24", "dev", "wan"],
            ["ip", "-n", gateway, "link", "set", "lan", "up"],
            ["ip", "-n", gateway, "link", "set", "wan", "up"],
            ["ip", "-n", gateway, "route", "add", "203.0.113.0/24", "via", "198.51.100.2"],
            ["ip", "-n", server, "addr", "add", "198.51.100.2/24", "dev", "eth0"],
            ["ip", "-n", server, "addr", "add", "203.0.113.10/32", "dev", "lo"],
            ["ip", "-n", server, "link", "set", "eth0", "up"],
            ["ip", "-n", server, "route", "add", "192.0.2.0/24", "via", "198.51.100.1"],
        ):
            run(args)
        run(in_namespace(gateway, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        yield {
            "client": client,
            "server": server,
            "client_mac": "02:00:00:00:00:10",
            "client_ip": "192.0.2.10",
        }
