"""
The network lab: real namespaces, veths, addresses and daemons for tests.

Use it through the pytest fixtures in ``tests/lab/conftest.py``::

    pytestmark = pytest.mark.lab

    def test_something(lab):                     # a fresh Lab, cleaned up after the test
        gateway = lab.gateway()                  # ns <prefix>-gw: bridge "lan" 192.0.2.1/24, ip_forward=1
        phone = lab.client("c1")                 # ns <prefix>-c1: "eth0" on the gateway's bridge
        internet = lab.internet()                # ns <prefix>-net: uplink + "internet" hosts
        dhcp = lab.dnsmasq_dhcp()                # dnsmasq (DHCP only, port=0) on the gateway's bridge
        phone.dhclient()                         # real dhclient; waits until it has an address
        phone.run(["ping", "-c1", "-W1", "192.0.2.1"])
        server = internet.spawn(["python3", "-m", "http.server", ...], name="web")
        ...                                      # everything is removed at the end, pass or fail

Topology (every address from the documentation ranges)::

    [<p>-c1] eth0 ─veth─ lan1 ┐
    [<p>-c2] eth0 ─veth─ lan2 ┴ bridge "lan" 192.0.2.1/24 [<p>-gw] "wan" 198.51.100.1/24
                                                             ─veth─ "eth0" 198.51.100.2/24 [<p>-net]
                                                                    "lo" 203.0.113.1/32 (+ more)

* ``Lab.prefix`` (``pd<pid>n<k>``, at most 12 characters) names every namespace
  (``<prefix>-gw``, ``<prefix>-c1``, ``<prefix>-net``) and should prefix
  anything else a test makes that is visible outside its namespaces.
  Interfaces are created inside the namespaces, so their names are short and
  fixed (``lan``, ``lanN``, ``wan``, ``eth0``).
* ``Namespace.run(argv)`` runs a command to completion (``check=True`` raises
  with its output); ``Namespace.spawn(argv, name=...)`` starts a background
  process, tracked by PID, its output in ``<tmp>/<name>.log``;
  ``Process.stop()`` ends it (TERM, then KILL).  Run daemons in the foreground.
* ``Client.dhclient()`` runs real ``dhclient`` with its own lease, pid and
  script files in the test's tmp dir; the script sets the address and route
  and writes ``/etc/netns/<ns>/resolv.conf`` (created by the lab for every
  client, so the host's /etc/resolv.conf is never touched).
  ``Client.release()`` runs ``dhclient -r``.
* ``Lab.dnsmasq_dhcp()`` serves DHCP (only: ``port=0``) on the gateway's LAN,
  writing its lease file in the tmp dir.
* ``Lab.cleanup()`` (the fixture's finalizer) stops every process, deletes
  every namespace (and the veths in them) and ``/etc/netns`` entry.
  ``sweep_stale()`` (run once per session) removes what earlier runs left
  behind, only for prefixes whose PID is no longer alive: other test runs on
  the same machine are left alone.
* ``wait_for(predicate, timeout)`` polls, bounded in time, for lab tests.

Lab tests are marked ``@pytest.mark.lab``; the ``lab`` fixture skips them with
the reason when the machine cannot make namespaces (not root, no ``ip``).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

LAN = ipaddress.ip_network("192.0.2.0/24")
GATEWAY_ADDRESS = "192.0.2.1"
UPLINK = ipaddress.ip_network("198.51.100.0/24")
GATEWAY_UPLINK_ADDRESS = "198.51.100.1"
INTERNET_UPLINK_ADDRESS = "198.51.100.2"
INTERNET = ipaddress.ip_network("203.0.113.0/24")
INTERNET_HOST_ADDRESS = "203.0.113.1"

NETNS_ETC = Path("/etc/netns")
_NETNS_RUN = Path("/run/netns")
# pd<pid>n<k>-<role>: the PID of the test process that made it.
_OURS = re.compile(r"^pd(\d+)n\d+-")
_instances = itertools.count(1)

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab command failed; the message holds its output."""


def unavailable_reason() -> str | None:
    """Why this machine cannot run lab tests, or None when it can."""
    if os.geteuid() != 0:
        return "lab tests need root (to create network namespaces); run 'make test' as root"
    if shutil.which("ip") is None:
        return "lab tests need the 'ip' command (Debian package iproute2)"
    return None


def require(*commands: str) -> None:
    """Raise LabError naming the first command that is not installed."""
    for command in commands:
        if shutil.which(command) is None:
            raise LabError(f"{command!r} is not installed (see tests/lab/install-packages.sh)")


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None):
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, input=input, check=False
    )
    if check and result.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll C{predicate} until it returns something true; raise after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(namespace: str) -> None:
    """End every process left inside C{namespace} (only called for our own namespaces)."""
    result = _run(["ip", "netns", "pids", namespace], check=False)
    pids = [int(p) for p in result.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2.0
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if pid_alive(pid) and not _is_zombie(pid)]
            time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _delete_namespace(namespace: str) -> None:
    _kill_namespace_processes(namespace)
    _run(["ip", "netns", "delete", namespace], check=False)
    shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)


def sweep_stale() -> list[str]:
    """
    Delete namespaces (with their processes and veths) and /etc/netns entries
    left by earlier lab runs whose process is dead.  Returns what was removed.
    """
    names: set[str] = set()
    for directory in (_NETNS_RUN, NETNS_ETC):
        if directory.is_dir():
            names.update(entry.name for entry in directory.iterdir())
    removed = []
    for name in sorted(names):
        match = _OURS.match(name)
        if match and not pid_alive(int(match.group(1))):
            _delete_namespace(name)
            removed.append(name)
    return removed


class Process:
    """A background process in a namespace, tracked by PID."""

    def __init__(self, popen: subprocess.Popen, name: str, log_path: Path, log_start: int = 0) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path
        # Where this process's output starts in a log shared with earlier runs.
        self.log_start = log_start

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """What this process wrote (stdout and stderr) so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """End the process (TERM, then KILL after C{timeout}); return its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid}>"


class Namespace:
    """One network namespace made by the lab."""

    def __init__(self, lab: Lab, role: str) -> None:
        self.lab = lab
        self.role = role
        self.name = f"{lab.prefix}-{role}"

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None
    ):
        """Run C{argv} in this namespace to completion; a CompletedProcess (text)."""
        return _run(self.exec_argv(argv), check=check, timeout=timeout, input=input)

    def spawn(self, argv: Sequence[str], *, name: str, env: dict[str, str] | None = None) -> Process:
        """
        Start C{argv} in the background in this namespace (keep daemons in the
        foreground), with C{env} added to the environment.
        """
        log_path = self.lab.tmp / f"{self.role}-{name}.log"
        with open(log_path, "ab") as log:
            log_start = log.tell()
            # ip netns exec execs the command: the PID is the daemon's own.
            popen = subprocess.Popen(
                self.exec_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        process = Process(popen, f"{self.role}-{name}", log_path, log_start)
        self.lab.processes.append(process)
        return process

    def mac(self, interface: str) -> str:
        return self.link(interface)["address"]

    def link(self, interface: str) -> dict:
        return json.loads(self.run(["ip", "-j", "link", "show", "dev", interface]).stdout)[0]

    def addresses(self, interface: str, family: str = "inet") -> list[str]:
        """The interface's addresses of C{family} ("inet" or "inet6"), without prefix lengths."""
        data = json.loads(self.run(["ip", "-j", "addr", "show", "dev", interface]).stdout)
        return [a["local"] for entry in data for a in entry.get("addr_info", []) if a["family"] == family]

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"


class Client(Namespace):
    """A client namespace: "eth0" on the gateway's LAN bridge, and a resolv.conf of its own."""

    def __init__(self, lab: Lab, role: str, mac: str, hostname: str) -> None:
        super().__init__(lab, role)
        self.interface = "eth0"
        self.mac_address = mac
        self.hostname = hostname
        self.resolv_conf = NETNS_ETC / self.name / "resolv.conf"
        self.dhclient_process: Process | None = None
        # The options dhclient asks for (a test adds e.g. "default-url", option 114).
        self.requested_options = ["subnet-mask", "broadcast-address", "routers", "domain-name-servers"]

    def _dhclient_files(self) -> list[str]:
        tmp = self.lab.tmp
        config = tmp / f"{self.role}-dhclient.conf"
        if not config.exists():
            # Not /etc/dhcp/dhclient.conf: a host name of our choosing, the options we use.
            config.write_text(
                f'send host-name "{self.hostname}";\nrequest {", ".join(self.requested_options)};\n'
            )
        return [
            "-cf",
            str(config),
            "-sf",
            str(self._script()),
            "-lf",
            str(tmp / f"{self.role}-dhclient.leases"),
            "-pf",
            str(tmp / f"{self.role}-dhclient.pid"),
        ]

    def _script(self) -> Path:
        path = self.lab.tmp / f"{self.role}-dhclient-script"
        if not path.exists():
            path.write_text(_DHCLIENT_SCRIPT.format(resolv_conf=self.resolv_conf))
            path.chmod(0o755)
        return path

    def dhclient(self, *, wait: bool = True, timeout: float = 15.0) -> Process:
        """
        Start dhclient in the foreground on eth0; with C{wait}, return once the
        interface has an IPv4 address from the lease.
        """
        require("dhclient")
        self.dhclient_process = self.spawn(
            ["dhclient", "-4", "-d", "-v", *self._dhclient_files(), self.interface], name="dhclient"
        )
        if wait:
            wait_for(self.address, timeout, what=f"a DHCP address on {self.name}")
        return self.dhclient_process

    def address(self) -> str | None:
        """The client's IPv4 address on eth0, if any."""
        addresses = self.addresses(self.interface)
        return addresses[0] if addresses else None

    def release(self) -> None:
        """``dhclient -r``: send DHCPRELEASE and stop the running dhclient."""
        self.run(["dhclient", "-4", "-r", "-v", *self._dhclient_files(), self.interface], timeout=20)
        if self.dhclient_process is not None:
            self.dhclient_process.stop()


# dhclient's own script would rewrite /etc/resolv.conf through a temporary
# file in /etc: this one sets only the interface and writes the namespace's
# resolv.conf (by its /etc/netns path, so never the host's).
_DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
    PREINIT)
        ip link set dev "$interface" up ;;
    BOUND|RENEW|REBIND|REBOOT)
        if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
            ip -4 addr flush dev "$interface"
        fi
        ip -4 addr replace "$new_ip_address/${{new_subnet_mask:-255.255.255.255}}" dev "$interface" \\
            valid_lft "${{new_dhcp_lease_time:-forever}}" preferred_lft "${{new_dhcp_lease_time:-forever}}"
        for router in $new_routers; do
            ip -4 route replace default via "$router" dev "$interface"
            break
        done
        if [ -n "$new_domain_name_servers" ]; then
            for server in $new_domain_name_servers; do echo "nameserver $server"; done > "{resolv_conf}"
        fi ;;
    EXPIRE|FAIL|RELEASE|STOP)
        ip -4 addr flush dev "$interface" ;;
esac
exit 0
"""


class DHCPServer:
    """A DHCP server process in the gateway and the lease file it writes."""

    def __init__(self, process: Process, lease_file: Path) -> None:
        self.process = process
        self.lease_file = lease_file

    def stop(self) -> None:
        self.process.stop()


class Lab:
    """
    One test's network: namespaces, veths, processes, all under one prefix,
    all removed by L{cleanup}.
    """

    def __init__(self, tmp: Path) -> None:
        self.prefix = f"pd{os.getpid()}n{next(_instances)}"
        self.tmp = Path(tmp)
        self.namespaces: list[Namespace] = []
        self.processes: list[Process] = []
        self._gateway: Namespace | None = None
        self._internet: Namespace | None = None
        self._clients: dict[str, Client] = {}

    # --- building blocks ---

    def namespace(self, role: str, cls: type[Namespace] = Namespace, **kwargs) -> Namespace:
        """A new, empty namespace ``<prefix>-<role>`` with loopback up."""
        namespace = cls(self, role, **kwargs)
        _run(["ip", "netns", "add", namespace.name])
        self.namespaces.append(namespace)
        namespace.run(["ip", "link", "set", "lo", "up"])
        return namespace

    def veth(self, a: Namespace, a_name: str, b: Namespace, b_name: str, a_mac: str | None = None) -> None:
        """A veth pair, created directly inside the two namespaces, both ends up."""
        argv = ["ip", "-n", a.name, "link", "add", a_name]
        if a_mac:
            argv += ["address", a_mac]
        _run([*argv, "type", "veth", "peer", "name", b_name, "netns", b.name])
        a.run(["ip", "link", "set", a_name, "up"])
        b.run(["ip", "link", "set", b_name, "up"])

    # --- the standard topology ---

    def gateway(self) -> Namespace:
        """The gateway: bridge "lan" with 192.0.2.1/24, IPv4 forwarding on."""
        if self._gateway is None:
            gateway = self.namespace("gw")
            gateway.run(["ip", "link", "add", "lan", "type", "bridge", "forward_delay", "0"])
            gateway.run(["ip", "addr", "add", f"{GATEWAY_ADDRESS}/{LAN.prefixlen}", "dev", "lan"])
            gateway.run(["ip", "link", "set", "lan", "up"])
            gateway.sysctl("net.ipv4.ip_forward", "1")
            self._gateway = gateway
        return self._gateway

    def client(
        self,
        role: str = "c1",
        *,
        address: str | None = None,
        mac: str | None = None,
        hostname: str | None = None,
    ) -> Client:
        """
        A client namespace whose "eth0" hangs off the gateway's bridge.  With
        C{address} (in 192.0.2.0/24), a static address and default route;
        otherwise none, for dhclient.  C{mac} defaults to 02:00:00:00:00:<n>,
        C{hostname} (what dhclient sends) to "phone-<role>".
        """
        if role in self._clients:
            return self._clients[role]
        gateway = self.gateway()
        index = len(self._clients) + 1
        mac = mac or f"02:00:00:00:00:{index:02x}"
        client = self.namespace(role, Client, mac=mac, hostname=hostname or f"phone-{role}")
        assert isinstance(client, Client)
        NETNS_ETC.joinpath(client.name).mkdir(parents=True, exist_ok=True)
        client.resolv_conf.write_text(f"nameserver {GATEWAY_ADDRESS}\n")
        self.veth(client, "eth0", gateway, f"lan{index}", a_mac=mac)
        gateway.run(["ip", "link", "set", f"lan{index}", "master", "lan"])
        if address is not None:
            if ipaddress.ip_address(address) not in LAN:
                raise LabError(f"{address} is not in the lab's LAN {LAN}")
            client.run(["ip", "addr", "add", f"{address}/{LAN.prefixlen}", "dev", "eth0"])
            client.run(["ip", "route", "add", "default", "via", GATEWAY_ADDRESS])
        self._clients[role] = client
        return client

    def internet(self) -> Namespace:
        """
        The "internet": uplink 198.51.100.2 (gateway 198.51.100.1 is the
        gateway's default route) and 203.0.113.1 on its loopback;
        add more hosts with L{add_internet_host}.  Routes back to the LAN
        without NAT.
        """
        if self._internet is None:
            gateway = self.gateway()
            internet = self.namespace("net")
            self.veth(gateway, "wan", internet, "eth0")
            gateway.run(["ip", "addr", "add", f"{GATEWAY_UPLINK_ADDRESS}/{UPLINK.prefixlen}", "dev", "wan"])
            internet.run(
                ["ip", "addr", "add", f"{INTERNET_UPLINK_ADDRESS}/{UPLINK.prefixlen}", "dev", "eth0"]
            )
            gateway.run(["ip", "route", "add", "default", "via", INTERNET_UPLINK_ADDRESS])
            internet.run(["ip", "route", "add", str(LAN), "via", GATEWAY_UPLINK_ADDRESS])
            # On loopback (no dummy module needed): /32 each, so that only
            # the addresses given are the internet's.
            internet.run(["ip", "addr", "add", f"{INTERNET_HOST_ADDRESS}/32", "dev", "lo"])
            self._internet = internet
        return self._internet

    def add_internet_host(self, address: str) -> None:
        """Another "internet" address (in 203.0.113.0/24) answered by the internet namespace."""
        if ipaddress.ip_address(address) not in INTERNET:
            raise LabError(f"{address} is not in the lab's internet {INTERNET}")
        self.internet().run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])

    # --- DHCP ---

    def dnsmasq_dhcp(
        self,
        *,
        first: str = "192.0.2.50",
        last: str = "192.0.2.150",
        lease_time: str = "2m",
        extra: Sequence[str] = (),
    ) -> DHCPServer:
        """dnsmasq as the gateway's DHCP server only (no DNS: port=0), lease file in tmp."""
        require("dnsmasq")
        gateway = self.gateway()
        lease_file = self.tmp / "dnsmasq.leases"
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--group=root",
            "--interface=lan",
            "--bind-interfaces",
            "--dhcp-authoritative",
            # dnsmasq pings an address for 3 s before offering it: no use in a lab.
            "--no-ping",
            "--log-dhcp",
            "--log-facility=-",
            f"--dhcp-range={first},{last},255.255.255.0,{lease_time}",
            f"--dhcp-option=option:router,{GATEWAY_ADDRESS}",
            f"--dhcp-option=option:dns-server,{GATEWAY_ADDRESS}",
            f"--dhcp-leasefile={lease_file}",
            f"--pid-file={self.tmp / 'dnsmasq.pid'}",
            *extra,
        ]
        process = gateway.spawn(argv, name="dnsmasq")
        wait_for(lambda: lease_file.exists() or not process.running(), 10, what="dnsmasq to start")
        if not process.running():
            raise LabError(f"dnsmasq exited at start:\n{process.log()}")
        return DHCPServer(process, lease_file)

    def isc_dhcpd(
        self, *, first: str = "192.0.2.50", last: str = "192.0.2.150", lease_time: int = 120
    ) -> DHCPServer:
        """ISC dhcpd (isc-dhcp-server) in the foreground on the gateway's LAN, files in tmp."""
        require("dhcpd")
        gateway = self.gateway()
        config = self.tmp / "dhcpd.conf"
        config.write_text(
            "authoritative;\n"
            "ddns-update-style none;\n"
            "ping-check false;\n"
            f"default-lease-time {lease_time};\n"
            f"max-lease-time {lease_time};\n"
            f"min-lease-time {lease_time};\n"
            f"subnet {LAN.network_address} netmask {LAN.netmask} {{\n"
            f"  range {first} {last};\n"
            f"  option routers {GATEWAY_ADDRESS};\n"
            f"  option domain-name-servers {GATEWAY_ADDRESS};\n"
            "}\n"
        )
        lease_file = self.tmp / "dhcpd.leases"
        lease_file.touch()
        argv = [
            "dhcpd", "-4", "-f", "-d", "-cf", str(config), "-lf", str(lease_file),
            "-pf", str(self.tmp / "dhcpd.pid"), "lan",
        ]  # fmt: skip
        process = gateway.spawn(argv, name="dhcpd")
        self._wait_started(process, "Sending on   Socket/fallback")
        return DHCPServer(process, lease_file)

    def kea_dhcp4(
        self,
        *,
        first: str = "192.0.2.50",
        last: str = "192.0.2.150",
        lease_time: int = 120,
        lfc_interval: int = 0,
    ) -> DHCPServer:
        """
        Kea (kea-dhcp4) on the gateway's LAN: memfile lease4.csv, pid and lock
        files in tmp; its lease file cleanup every C{lfc_interval} seconds (0: never).
        """
        require("kea-dhcp4")
        gateway = self.gateway()
        lease_file = self.tmp / "kea-leases4.csv"
        config = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": ["lan"], "dhcp-socket-type": "raw"},
                "lease-database": {
                    "type": "memfile",
                    "persist": True,
                    "name": str(lease_file),
                    "lfc-interval": lfc_interval,
                },
                "valid-lifetime": lease_time,
                # Reclaim expired leases every second (default 10 s): they
                # stay in the file as state 2, expired-reclaimed.
                "expired-leases-processing": {"reclaim-timer-wait-time": 1},
                "subnet4": [
                    {
                        "subnet": str(LAN),
                        "id": 1,
                        "pools": [{"pool": f"{first} - {last}"}],
                        "option-data": [
                            {"name": "routers", "data": GATEWAY_ADDRESS},
                            {"name": "domain-name-servers", "data": GATEWAY_ADDRESS},
                        ],
                    }
                ],
                "loggers": [
                    {"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}
                ],
            }
        }
        config_file = self.tmp / "kea-dhcp4.json"
        config_file.write_text(json.dumps(config, indent=2))
        # Kea's pid and lock files go to /run/kea by default: shared between runs.
        env = {"KEA_PIDFILE_DIR": str(self.tmp), "KEA_LOCKFILE_DIR": str(self.tmp)}
        process = gateway.spawn(["kea-dhcp4", "-c", str(config_file)], name="kea-dhcp4", env=env)
        self._wait_started(process, "DHCP4_STARTED")
        return DHCPServer(process, lease_file)

    def _wait_started(self, process: Process, marker: str, timeout: float = 10.0) -> None:
        wait_for(
            lambda: marker in process.log() or not process.running(), timeout, what=f"{process.name} to start"
        )
        if not process.running():
            raise LabError(f"{process.name} exited at start:\n{process.log()}")

    # --- the end ---

    def cleanup(self) -> None:
        """Stop every process and delete every namespace this lab made."""
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:  # keep cleaning up the rest
                pass
        for namespace in reversed(self.namespaces):
            _delete_namespace(namespace.name)
        self.namespaces.clear()
        self.processes.clear()
