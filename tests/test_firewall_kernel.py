"""
The nftables backend against the real kernel: real nft and conntrack run by
the real process runner on the real reactor, in throwaway namespaces with a
client, a gateway and a server ("the internet"), and real packets.

portald's firewall runs in the test process; the configured firewall.nft and
firewall.conntrack are two-line wrappers that run the real programs inside
the gateway namespace.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from portald.config import parse_config
from portald.firewall import ruleset
from portald.firewall.nftables import NftablesFirewall
from portald.firewall.process import SpawnedProcessRunner
from portald.table import AuthorizationTable, EndReason
from tests import firewall_netns as netns

pytestmark = pytest.mark.lab

SERVERS = Path(__file__).with_name("firewall_servers.py")
CLIENT_MAC = "02:00:00:00:00:10"
CLIENT_IP = "192.0.2.10"


def yaml(nft: Path, conntrack: Path, on_stop: str = "keep") -> str:
    return f"""\
portal:
  address: 192.0.2.1
  subnets: [192.0.2.0/24]
  interface: lan
leases:
  sources: [{{format: dnsmasq, path: /nonexistent/dnsmasq.leases}}]
dns:
  port: 5353
http:
  port: 8080
firewall:
  backend: nftables
  allowed_macs: [02:00:00:00:00:99]
  walled_garden: [203.0.113.128/25]
  on_stop: {on_stop}
  nft: {nft}
  conntrack: {conntrack}
"""


class KernelTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        reason = netns.unavailable_reason()
        if reason:
            raise pytest.skip.Exception(reason)
        self.stack = ExitStack()
        self.addCleanup(self.stack.close)
        self.tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{netns.PREFIX}-")))
        self.gateway = self.stack.enter_context(netns.namespace("gw"))
        self.net = self.stack.enter_context(netns.lan(self.gateway))
        netns.run(["ip", "-n", self.net["server"], "addr", "add", "203.0.113.53/32", "dev", "lo"])
        netns.run(["ip", "-n", self.net["server"], "addr", "add", "203.0.113.200/32", "dev", "lo"])
        self.nft_path, self.conntrack_path = netns.namespaced_helpers(self.gateway, self.tmp)
        # Where intercepted traffic lands: "gateway" servers on portald's ports.
        self.serve(self.gateway, "http", "192.0.2.1", 8080, "gateway")
        self.serve(self.gateway, "udp-echo", "192.0.2.1", 5353, "gateway")
        # The internet's real servers.
        self.serve(self.net["server"], "http", "203.0.113.10", 80, "internet")
        self.serve(self.net["server"], "http", "203.0.113.200", 80, "garden")
        self.serve(self.net["server"], "udp-echo", "203.0.113.53", 53, "internet")
        self.serve(self.net["server"], "udp-log", "203.0.113.10", 443, str(self.tmp / "quic.log"))
        self.serve(self.net["server"], "http", "203.0.113.10", 443, "tls-port")
        self.clock = reactor
        self.table = AuthorizationTable(reactor)
        self.firewall: NftablesFirewall | None = None
        self.addCleanup(self.end_sessions)

    def end_sessions(self) -> None:
        # Cancels the table's expiry calls, which trial wants gone.
        for session in self.table.sessions():
            self.table.deauthorize(session.mac, EndReason.ADMIN)

    def serve(self, namespace: str, kind: str, address: str, port: int, arg: str) -> None:
        ready = self.tmp / f"ready-{kind}-{address}-{port}"
        process = subprocess.Popen(
            netns.in_namespace(
                namespace, [sys.executable, str(SERVERS), kind, address, str(port), arg, str(ready)]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.stack.callback(lambda: (process.kill(), process.wait()))
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, (
                f"{kind} {address}:{port} did not start"
            )
            time.sleep(0.02)

    def make_firewall(self, on_stop: str = "keep", **options: float) -> NftablesFirewall:
        config = parse_config(yaml(self.nft_path, self.conntrack_path, on_stop))
        firewall = NftablesFirewall(config, self.table, reactor, SpawnedProcessRunner(reactor), **options)
        self.table.add_observer(firewall)
        self.firewall = firewall
        return firewall

    @inlineCallbacks
    def started(self, on_stop: str = "keep"):
        firewall = self.make_firewall(on_stop)
        firewall.startService()
        self.addCleanup(lambda: firewall.stopService() if firewall.running else None)
        yield firewall.applied()
        return firewall

    # --- what the client sees ---

    def client(self, argv: list[str]) -> subprocess.CompletedProcess:
        return netns.run(netns.in_namespace(self.net["client"], argv), check=False, timeout=10)

    def http_get(self, address: str, port: int = 80) -> str:
        """The body's first word, or curl's exit status (7: refused/reset, 28: timed out)."""
        result = self.client(["curl", "-s", "--max-time", "2", f"http://{address}:{port}/"])
        return result.stdout.strip() if result.returncode == 0 else f"curl exit {result.returncode}"

    def udp_ask(self, address: str, port: int, source_port: int = 40053) -> str:
        script = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.bind(('{CLIENT_IP}', {source_port}))\n"
            "s.settimeout(1.5)\n"
            f"s.sendto(b'hello', ('{address}', {port}))\n"
            "try:\n"
            "    print(s.recvfrom(100)[0].decode())\n"
            "except socket.timeout:\n"
            "    print('no answer')\n"
        )
        return self.client([sys.executable, "-c", script]).stdout.strip()

    def pings(self, address: str = "203.0.113.10") -> bool:
        return self.client(["ping", "-c", "1", "-W", "1", address]).returncode == 0

    def listing(self) -> str:
        return netns.nft(self.gateway, "list", "table", "inet", "portald").stdout

    def authorized_set(self) -> str:
        return netns.nft(self.gateway, "list", "set", "inet", "portald", "authorized").stdout

    def conntrack_entries(self) -> str:
        return netns.run(
            netns.in_namespace(self.gateway, ["conntrack", "-L", "-s", CLIENT_IP]), check=False
        ).stdout

    def authorize(self, duration: float | None = 600) -> None:
        self.table.authorize(CLIENT_MAC, ip=CLIENT_IP, method="click-through", duration=duration)


class UnauthorizedClients(KernelTestCase):
    @inlineCallbacks
    def test_are_steered_to_portald_and_refused_the_rest(self):
        yield self.started()
        # Web and DNS to any address land on portald's ports on the gateway.
        self.assertEqual(self.http_get("203.0.113.10"), "gateway")
        self.assertEqual(self.udp_ask("203.0.113.53", 53), "gateway:hello")
        # TLS is refused with a reset (curl: "connection refused"), not left to time out.
        self.assertEqual(self.http_get("203.0.113.10", 443), "curl exit 7")
        # QUIC never arrives.
        self.assertEqual(self.udp_ask("203.0.113.10", 443), "no answer")
        self.assertFalse((self.tmp / "quic.log").exists())
        # Everything else is dropped.
        self.assertFalse(self.pings())
        # Configured walled garden: reached for real, web included.
        self.assertEqual(self.http_get("203.0.113.200"), "garden")

    @inlineCallbacks
    def test_reach_addresses_learned_from_walled_garden_answers(self):
        firewall = yield self.started()
        self.assertEqual(self.http_get("203.0.113.10"), "gateway")
        firewall.on_walled_garden_answer(["203.0.113.10"], 1)
        yield firewall.applied()
        self.assertEqual(self.http_get("203.0.113.10"), "internet")
        self.assertTrue(self.pings())
        self.assertIn("203.0.113.10 timeout 1m", self.listing())  # the floor, not the TTL of 1s


class AuthorizedClients(KernelTestCase):
    @inlineCallbacks
    def test_authorize_opens_and_deauthorize_closes(self):
        firewall = yield self.started()
        self.assertFalse(self.pings())
        self.authorize(600)
        yield firewall.applied()
        self.assertTrue(self.pings())
        self.assertEqual(self.http_get("203.0.113.10"), "internet")
        self.assertEqual(self.udp_ask("203.0.113.53", 53, source_port=40054), "internet:hello")
        self.assertEqual(self.http_get("203.0.113.10", 443), "tls-port")
        self.assertEqual(self.udp_ask("203.0.113.10", 443), "no answer")  # the log server never answers
        self.assertTrue((self.tmp / "quic.log").exists())
        listing = self.listing()
        # The session's time left when the grant was made, to the millisecond:
        # 10m, or a few ms less when the reactor's clock moved meanwhile.
        self.assertRegex(listing, rf"elements = {{ {CLIENT_MAC} timeout (?:10m|9m59s\d+ms) expires \d+m")

        self.table.deauthorize(CLIENT_MAC, EndReason.LOGOUT)
        yield firewall.applied()
        self.assertFalse(self.pings())
        self.assertEqual(self.http_get("203.0.113.10"), "gateway")
        # Neither signed in nor counted (seen6 still knows its link-local
        # address: which device sends from an address is not a session).
        self.assertNotIn(CLIENT_MAC, self.authorized_set())
        self.assertNotIn(
            CLIENT_MAC, netns.nft(self.gateway, "list", "set", "inet", "portald", "bytes_from_client").stdout
        )

    @inlineCallbacks
    def test_counters_in_both_directions(self):
        firewall = yield self.started()
        self.authorize()
        yield firewall.applied()
        before = yield firewall.read_counters()
        self.assertEqual(before, {CLIENT_MAC: (0, 0)})
        self.assertTrue(
            self.client(["ping", "-c", "3", "-i", "0.2", "-s", "1000", "-W", "1", "203.0.113.10"])
        )
        after = yield firewall.read_counters()
        sent, received = after[CLIENT_MAC]
        # Three echo requests out and three replies back, 1028 bytes each at least.
        self.assertGreaterEqual(sent, 3 * 1028)
        self.assertGreaterEqual(received, 3 * 1028)

    @inlineCallbacks
    def test_connections_intercepted_before_login_are_flushed(self):
        firewall = yield self.started()
        # A "resolver" flow from a fixed source port, intercepted before login.
        self.assertEqual(self.udp_ask("203.0.113.53", 53, source_port=40055), "gateway:hello")
        self.assertIn("dport=53", self.conntrack_entries())
        # And one to portald's own address, as a portal page's is: not redirected.
        self.assertEqual(self.udp_ask("192.0.2.1", 5353, source_port=40056), "gateway:hello")
        self.authorize()
        yield firewall.applied()
        for _ in range(100):  # the flush runs just after the batch
            if "sport=40055" not in self.conntrack_entries():
                break
            yield deferLater(reactor, 0.05, lambda: None)
        # The same flow now reaches the real server instead of staying redirected.
        self.assertEqual(self.udp_ask("203.0.113.53", 53, source_port=40055), "internet:hello")
        # Only redirected connections end: one that was never redirected (or
        # was opened since the grant) is not cut.
        self.assertIn("sport=40056", self.conntrack_entries())

    @inlineCallbacks
    def test_kernel_timeout_is_a_safety_net_when_portald_is_gone(self):
        firewall = yield self.started()
        self.authorize(duration=2)
        yield firewall.applied()
        self.assertTrue(self.pings())
        # portald "dies": the table's own expiry never reaches the kernel.
        self.table.remove_observer(firewall)
        yield deferLater(reactor, 2.5, lambda: None)
        self.assertNotIn(CLIENT_MAC, self.authorized_set())
        self.assertFalse(self.pings())


class Lifecycle(KernelTestCase):
    @inlineCallbacks
    def test_start_reconciles_with_the_table_winning(self):
        # What an earlier portald left: the client (with traffic counted) and a stale MAC.
        plan = ruleset.FirewallPlan.from_config(parse_config(yaml(self.nft_path, self.conntrack_path)))
        old = [
            ruleset.AuthorizedClient(
                CLIENT_MAC,
                ipaddress.ip_address(CLIENT_IP),
                600,
                ruleset.Counter(4, 4000),
                ruleset.Counter(5, 5000),
            ),
            ruleset.AuthorizedClient("02:00:00:00:00:77", ipaddress.ip_address("192.0.2.77"), 600),
        ]
        netns.nft(self.gateway, "-f", "-", input=ruleset.ruleset(plan, old))
        self.authorize()
        self.table.authorize("02:00:00:00:00:78", ip="192.0.2.78", method="click-through", duration=60)
        firewall = yield self.started()
        listing = self.listing()
        self.assertIn(CLIENT_MAC, listing)
        self.assertIn("02:00:00:00:00:78", listing)
        self.assertNotIn("02:00:00:00:00:77", listing)
        counters = yield firewall.read_counters()
        self.assertEqual(counters[CLIENT_MAC], (4000, 5000))
        self.assertTrue(self.pings())

    @inlineCallbacks
    def test_stop_keeps_the_table_so_clients_stay_connected(self):
        firewall = yield self.started("keep")
        self.authorize()
        yield firewall.applied()
        yield firewall.stopService()
        self.assertIn(CLIENT_MAC, self.listing())
        self.assertTrue(self.pings())
        # The next start takes over without a gap for the client.
        self.table.remove_observer(firewall)
        yield self.started("keep")
        self.assertTrue(self.pings())

    @inlineCallbacks
    def test_stop_removes_the_table_when_configured(self):
        firewall = yield self.started("remove")
        self.authorize()
        yield firewall.applied()
        yield firewall.stopService()
        tables = netns.nft(self.gateway, "list", "tables").stdout
        self.assertNotIn("portald", tables)
        # Without portald's table nothing is steered or refused any more.
        self.assertEqual(self.http_get("203.0.113.10"), "internet")

    @inlineCallbacks
    def test_a_deleted_table_is_rebuilt_after_failures(self):
        firewall = self.make_firewall(first_retry=0.05)
        firewall.startService()
        self.addCleanup(lambda: firewall.stopService() if firewall.running else None)
        yield firewall.applied()
        netns.nft(self.gateway, "delete", "table", "inet", "portald")
        self.authorize()
        yield firewall.applied()
        self.assertEqual(firewall.stats.failures, 3)
        self.assertEqual(firewall.stats.reloads, 2)
        self.assertIn(CLIENT_MAC, self.listing())
        self.assertTrue(self.pings())


class ProcessRunner(TestCase):
    """The real runner on its own: exit status, output, environment, hangs."""

    @inlineCallbacks
    def test_exit_status_output_and_stdin(self):
        runner = SpawnedProcessRunner(reactor)
        result = yield runner.run("/bin/sh", ["-c", "cat; echo oops >&2; exit 3"], b"some input")
        self.assertEqual((result.exit_code, result.stdout, result.stderr), (3, b"some input", b"oops\n"))
        self.assertEqual(result.message(), "exit status 3: oops")

    @inlineCallbacks
    def test_explicit_environment(self):
        result = yield SpawnedProcessRunner(reactor).run("/usr/bin/env", [])
        self.assertEqual(result.stdout, b"PATH=/usr/sbin:/usr/bin:/sbin:/bin\nLC_ALL=C\n")

    @inlineCallbacks
    def test_missing_program(self):
        result = yield SpawnedProcessRunner(reactor).run("/nonexistent/nft", ["-f", "-"])
        self.assertEqual(result.exit_code, None)
        self.assertIn("not an executable file", result.message())

    @inlineCallbacks
    def test_a_hung_program_is_killed(self):
        result = yield SpawnedProcessRunner(reactor, timeout=0.2).run("/bin/sleep", ["10"])
        self.assertEqual(result.exit_code, None)
        self.assertIn("took too long", result.message())
