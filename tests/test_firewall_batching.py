"""
The nftables backend's queue: batching, ordering, retry with backoff,
reconciling at start, connection flushes, walled-garden learning, counters
and stopping.  nft and conntrack are the fake runner; time is a Clock.
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from portald.firewall import ruleset
from portald.firewall.interface import IFirewall
from portald.firewall.nftables import NftablesFirewall
from portald.limits import CountersUnavailable
from portald.table import AuthorizationTable, EndReason, Session
from tests.fake_runner import FakeRunner, Invocation
from tests.firewall_plans import FULL_YAML, MINIMAL_YAML, config

NFT = "/usr/sbin/nft"
CONNTRACK = "/usr/sbin/conntrack"
MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def kernel_json(sets: dict[str, list]) -> bytes:
    items: list[dict] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
    items.append({"table": {"family": "inet", "name": "portald", "handle": 1}})
    for name, elements in sets.items():
        items.append({"set": {"family": "inet", "name": name, "table": "portald", "elem": elements}})
    return json.dumps({"nftables": items}).encode()


def counted(value: str, packets: int, size: int) -> dict:
    return {"elem": {"val": value, "counter": {"packets": packets, "bytes": size}}}


class Harness:
    def __init__(self, yaml: str = MINIMAL_YAML, **options: Any) -> None:
        self.clock = Clock()
        self.runner = FakeRunner()
        self.table = AuthorizationTable(self.clock)
        self.config = config(yaml)
        self.firewall = NftablesFirewall(self.config, self.table, self.clock, self.runner, **options)
        self.table.add_observer(self.firewall)

    def start(self, kernel: bytes | None = None) -> Invocation:
        """Start, answer the read of the old table, and return the load."""
        self.firewall.startService()
        self.clock.advance(0)
        read = self.runner.only_running()
        assert (read.executable, read.args) == (
            NFT,
            ("-j", "list", "table", "inet", self.config.firewall.table),
        )
        if kernel is None:
            read.finish(1, stderr=b"Error: No such file or directory\nlist table inet portald\n")
        else:
            read.finish(0, stdout=kernel)
        load = self.runner.only_running()
        assert (load.executable, load.args) == (NFT, ("-f", "-"))
        return load

    def started(self) -> None:
        self.start().finish(0)
        self.clock.advance(0)
        assert self.runner.running() == []

    def authorize(self, mac: str, ip: str, duration: float | None = 3600) -> None:
        self.table.authorize(mac, ip=ip, method="click-through", duration=duration)

    def firewall_calls(self) -> list:
        mine = (self.firewall, self.firewall.queue)
        return [c for c in self.clock.getDelayedCalls() if getattr(c.func, "__self__", None) in mine]

    def nft_running(self) -> list[Invocation]:
        """The nft commands that change the kernel (not the listings of what it learned)."""
        return [
            i for i in self.runner.running() if i.executable == NFT and i.args[:3] != ("-j", "list", "set")
        ]

    def seen6_listings(self) -> list[Invocation]:
        return [
            i for i in self.runner.running() if i.args == ("-j", "list", "set", "inet", "portald", "seen6")
        ]

    def only_nft(self) -> Invocation:
        running = self.nft_running()
        assert len(running) == 1, running
        return running[0]

    def conntrack_running(self) -> list[Invocation]:
        return [i for i in self.runner.running() if i.executable == CONNTRACK]


def fired(d: Deferred) -> list:
    """Fills with C{d}'s result once it has one (C{called} is true already while it waits on another)."""
    results: list = []
    d.addCallback(results.append)
    return results


def lines(*groups: list[str]) -> str:
    return "".join(line + "\n" for group in groups for line in group)


def test_it_is_a_firewall() -> None:
    assert IFirewall.providedBy(Harness().firewall)


def test_each_backend_says_whether_it_counts_traffic() -> None:
    from zope.interface.verify import verifyObject

    from portald.firewall.none import NoFirewall

    assert verifyObject(IFirewall, Harness().firewall) and Harness().firewall.counts_traffic is True
    assert verifyObject(IFirewall, NoFirewall()) and NoFirewall().counts_traffic is False


def test_start_loads_the_whole_table_from_the_authorization_table() -> None:
    h = Harness()
    h.authorize(MAC1, "192.0.2.10", 600)
    h.clock.advance(100)
    load = h.start()
    plan = h.firewall.plan
    client = ruleset.AuthorizedClient(MAC1, ipaddress.ip_address("192.0.2.10"), 500.0)
    assert load.text == ruleset.ruleset(plan, [client])
    load.finish(0)
    assert h.firewall.stats.reloads == 1
    # The session from before start went into the load, not a batch; it is
    # not a new login, so its connections are left alone.
    h.clock.advance(0)
    assert h.runner.running() == []


def test_reconcile_table_wins_and_counters_of_continuing_sessions_survive() -> None:
    h = Harness()
    h.authorize(MAC1, "192.0.2.10", None)
    kernel = kernel_json(
        {
            "authorized": [MAC1, MAC2],
            "bytes_from_client": [counted(MAC1, 5, 500), counted(MAC2, 6, 600)],
            "bytes_to_client4": [counted("192.0.2.10", 8, 8000), counted("192.0.2.20", 1, 100)],
            "walled_garden_dns4": [{"elem": {"val": "203.0.113.200", "timeout": 300, "expires": 120}}],
        }
    )
    with capturedLogs() as events:
        load = h.start(kernel)
        load.finish(0)
    text = load.text
    assert f"{MAC1} counter packets 5 bytes 500" in text
    assert "192.0.2.10 counter packets 8 bytes 8000" in text
    assert MAC2 not in text and "192.0.2.20" not in text
    assert "203.0.113.200 timeout 120000ms" in text
    message = [e for e in events if "loaded" in e.get("log_format", "")][0]
    assert (message["kept"], message["added"], message["removed"]) == (1, 0, 1)


def test_changes_in_one_turn_go_in_one_invocation_in_order() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10", 60)
    h.authorize(MAC2, "192.0.2.20", 60)
    h.table.deauthorize(MAC1, EndReason.LOGOUT)
    assert h.runner.running() == []  # Nothing before the reactor turns.
    h.clock.advance(0)
    batch = h.only_nft()
    p = h.firewall.plan
    ip = ipaddress.ip_address
    assert batch.text == lines(
        ruleset.grant(p, MAC1, ip("192.0.2.10"), 60),
        ruleset.grant(p, MAC2, ip("192.0.2.20"), 60),
        ruleset.revoke(p, MAC1, ip("192.0.2.10")),
    )


def test_changes_during_an_invocation_wait_for_the_next_one() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    first = h.only_nft()
    h.authorize(MAC2, "192.0.2.20")
    h.authorize(MAC3, "192.0.2.30")
    h.clock.advance(1)
    assert h.nft_running() == [first]  # At most one nft at a time.
    first.finish(0)
    h.clock.advance(0)
    second = h.only_nft()
    assert MAC2 in second.text and MAC3 in second.text and MAC1 not in second.text
    assert second.text.index(MAC2) < second.text.index(MAC3)
    second.finish(0)
    assert h.firewall.stats.batches == 2 and h.firewall.stats.changes == 3


def test_connections_are_flushed_only_after_the_authorization_is_in_the_kernel() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    batch = h.only_nft()
    assert h.conntrack_running() == []
    batch.finish(0)
    flush = h.conntrack_running()
    # Only what was redirected to portald: a connection opened since the
    # grant already goes out, and is not cut.
    assert [(i.executable, i.args) for i in flush] == [(CONNTRACK, ("-D", "-s", "192.0.2.10", "--dst-nat"))]
    # conntrack says 1 when there was nothing to flush: not a failure.
    flush[0].finish(1, stderr=b"conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n")
    assert h.firewall.stats.conntrack_failures == 0


def test_applied_fires_once_the_connections_the_changes_end_are_ended() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    first = fired(h.firewall.applied())
    h.clock.advance(0)
    h.only_nft().finish(0)
    (flush,) = h.conntrack_running()
    # A guest told "signed in" now would open its next connection before the flush.
    assert not first
    h.authorize(MAC2, "192.0.2.20")
    second = fired(h.firewall.applied())
    h.clock.advance(0)
    h.only_nft().finish(0)
    flush.finish(0)
    # Not held by a flush begun after it.
    assert first and not second
    (later,) = h.conntrack_running()
    later.finish(1, stderr=b"conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n")
    assert second
    assert fired(h.firewall.applied())  # nothing under way


def test_a_sign_out_ends_the_connections_of_every_ipv6_address_the_device_used() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    h.only_nft().finish(0)
    for flush in h.conntrack_running():
        flush.finish(0)
    h.table.deauthorize(MAC1, EndReason.LOGOUT)
    signed_out = fired(h.firewall.applied())
    h.clock.advance(0)
    assert h.seen6_listings() == []  # not before the revoke is in the kernel
    h.only_nft().finish(0)
    seen = [
        {"elem": {"val": {"concat": [address, mac]}, "expires": 3500}}
        for address, mac in (("2001:db8:1::a", MAC1), ("2001:db8:1::b", MAC2), ("fe80::1", MAC1))
    ]
    listing = json.dumps({"nftables": [{"set": {"name": "seen6", "elem": seen}}]}).encode()
    (read,) = h.seen6_listings()
    read.finish(0, stdout=listing)
    running = h.conntrack_running()
    flushed = sorted(i.args for i in running)
    assert flushed == [("-D", "-s", "192.0.2.10"), ("-D", "-s", "2001:db8:1::a"), ("-D", "-s", "fe80::1")]
    # The sign-out is in force once every one of them is done.
    for flush in running:
        assert not signed_out
        flush.finish(0)
    assert signed_out
    # Its IPv6 addresses are counted afresh at its next sign-in.
    h.clock.advance(0)
    forget = h.only_nft().text
    for address in ("2001:db8:1::a", "fe80::1"):
        for name in ("signed_in6", "bytes_to_client6"):
            assert f"delete element inet portald {name} {{ {address} }}" in forget
    assert "2001:db8:1::b" not in forget


def test_a_failed_conntrack_is_counted_and_logged() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    h.only_nft().finish(0)
    with capturedLogs() as events:
        h.conntrack_running()[0].finish(None, stderr=b"/usr/sbin/conntrack: not an executable file")
    assert h.firewall.stats.conntrack_failures == 1
    assert any("not an executable file" in str(e.get("message")) for e in events)


def test_ended_sessions_are_flushed_too() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    h.only_nft().finish(0)
    h.conntrack_running()[0].finish(0)
    h.table.deauthorize(MAC1, EndReason.LOGOUT)
    h.clock.advance(0)
    h.only_nft().finish(0)
    assert [i.args for i in h.conntrack_running()] == [("-D", "-s", "192.0.2.10")]


def test_failure_is_logged_with_nfts_message_counted_and_retried_with_backoff() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    first = h.only_nft()
    with capturedLogs() as events:
        first.finish(1, stderr=b"Error: Could not process rule: Cannot allocate memory\n")
    errors = [e for e in events if e["log_level"].name == "error"]
    assert "Could not process rule: Cannot allocate memory" in errors[0]["message"]
    assert h.firewall.stats.failures == 1
    h.authorize(MAC2, "192.0.2.20")
    h.clock.advance(0.49)
    assert h.nft_running() == []
    assert h.conntrack_running() == []  # Not applied, so nothing flushed.
    h.clock.advance(0.01)
    retry = h.only_nft()
    # The failed changes again, then the new one, in order.
    assert retry.text.startswith(first.text) and MAC2 in retry.text[len(first.text) :]
    retry.finish(1, stderr=b"Error: again\n")
    h.clock.advance(0.99)
    assert h.nft_running() == []
    h.clock.advance(0.01)
    h.only_nft().finish(0)
    assert h.firewall.stats.failures == 2 and h.firewall.stats.batches == 1
    assert sorted(i.args[2] for i in h.conntrack_running()) == ["192.0.2.10", "192.0.2.20"]
    # Success resets the backoff.
    h.authorize(MAC3, "192.0.2.30")
    h.clock.advance(0)
    h.only_nft().finish(1)
    h.clock.advance(0.5)
    assert len(h.nft_running()) == 1


def test_backoff_is_capped() -> None:
    h = Harness(rebuild_after_failures=1000)  # Only the delays matter here.
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    delays = []
    for _ in range(9):
        h.only_nft().finish(1)
        call = h.clock.getDelayedCalls()[0]
        delays.append(call.getTime() - h.clock.seconds())
        h.clock.advance(delays[-1])
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_repeated_failures_rebuild_the_whole_table() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    for delay in (0.5, 1.0):
        h.only_nft().finish(1, stderr=b"Error: No such file or directory\n")
        h.clock.advance(delay)
    h.only_nft().finish(1, stderr=b"Error: No such file or directory\n")
    h.clock.advance(2.0)
    # Third failure in a row: read the kernel and load everything again.
    read = h.only_nft()
    assert read.args == ("-j", "list", "table", "inet", "portald")
    read.finish(1)
    load = h.only_nft()
    assert load.text.startswith("table inet portald {}\ndelete table inet portald\n")
    assert MAC1 in load.text
    load.finish(0)
    assert [i.args for i in h.conntrack_running()] == [("-D", "-s", "192.0.2.10", "--dst-nat")]
    assert h.firewall.stats.reloads == 2


def test_a_failed_start_is_retried() -> None:
    h = Harness()
    h.authorize(MAC1, "192.0.2.10")
    h.start().finish(1, stderr=b"Error: Could not process rule: Operation not permitted\n")
    assert h.firewall.stats.failures == 1
    h.clock.advance(0.5)
    h.only_nft().finish(1)  # the read again
    h.only_nft().finish(0)
    assert h.firewall.stats.reloads == 1


def test_changes_before_the_first_load_are_part_of_it() -> None:
    h = Harness()
    h.firewall.startService()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    h.only_nft().finish(1)  # no old table
    load = h.only_nft()
    assert MAC1 in load.text
    h.authorize(MAC2, "192.0.2.20")  # after the snapshot: a batch of its own
    load.finish(0)
    h.clock.advance(0)
    batch = h.only_nft()
    assert MAC2 in batch.text and MAC1 not in batch.text


def test_changes_the_first_load_will_read_from_the_table_carry_no_commands() -> None:
    h = Harness()
    for n in range(100):  # restored at start, before the first load is made
        h.authorize(f"02:00:00:00:01:{n:02x}", f"192.0.2.{100 + n}")
    h.table.deauthorize(MAC1, EndReason.LOGOUT)  # not signed in: nothing
    assert h.firewall.queue.pending == ()
    h.firewall.startService()
    h.clock.advance(0)
    h.authorize(MAC1, "192.0.2.10")
    h.table.deauthorize(MAC1, EndReason.LOGOUT)  # while the old table is read
    # Only what the load cannot do from the table: flushing the address's
    # connections (redirected before the sign-in, open at the sign-out).
    assert [(c.lines, c.flush_redirected, c.flush) for c in h.firewall.queue.pending] == [
        ((), ("192.0.2.10",), ()),
        ((), (), ("192.0.2.10",)),
    ]
    h.only_nft().finish(1)  # no old table
    load = h.only_nft()
    assert "02:00:00:00:01:63" in load.text and MAC1 not in load.text
    load.finish(0)
    h.clock.advance(0)
    # The sign-out's flush ends every connection, the redirected ones too.
    assert [i.args for i in h.conntrack_running()] == [("-D", "-s", "192.0.2.10")]


def test_extension_moves_only_the_timeout() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10", 600)
    h.clock.advance(0)
    h.only_nft().finish(0)
    h.clock.advance(100)
    h.table.extend(MAC1, 300)
    h.clock.advance(0)
    assert h.only_nft().text == lines(ruleset.extend(h.firewall.plan, MAC1, 800))


def test_a_client_back_with_another_address_has_its_old_counter_removed() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.authorize(MAC1, "192.0.2.11")
    h.clock.advance(0)
    text = h.only_nft().text
    assert "delete element inet portald bytes_to_client4 { 192.0.2.10 }" in text
    assert text.rstrip().endswith("add element inet portald bytes_to_client4 { 192.0.2.11 }")


def signed_in(h: Harness, *clients: tuple[str, str]) -> None:
    """Sign C{clients} (MAC, address) in, one clock tick apart, and let the batches and flushes finish."""
    for mac, ip in clients:
        h.authorize(mac, ip)
        h.clock.advance(1)
        for _ in range(2):  # the batch, then the flush it starts
            for invocation in h.runner.running():
                invocation.finish(0)
            h.clock.advance(0)


def read(h: Harness, downloads: dict[str, int]) -> dict:
    d = h.firewall.read_counters()
    h.only_nft().finish(
        0,
        stdout=kernel_json(
            {
                "bytes_from_client": [counted(m, 1, 1) for m in (MAC1, MAC2, MAC3)],
                "bytes_to_client4": [counted(ip, n // 100, n) for ip, n in downloads.items()],
            }
        ),
    )
    return d.result


def moved_to(h: Harness, *addresses: str) -> None:
    """Every signed-in device's lease is now at C{addresses}; the batch is due."""
    with capturedLogs():
        h.firewall.addresses_changed(lambda mac: frozenset(addresses))
    h.clock.advance(0.1)


def test_an_address_handed_on_to_another_signed_in_device_keeps_its_counter() -> None:
    # MAC1 signed in at .10, then got another address; MAC2 got .10 and
    # signed in.  MAC1's logout must not take MAC2's counter or connections.
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.10"), (MAC2, "192.0.2.10"))
    # Downloads to .10 are MAC2's, not the older session's too.
    d = h.firewall.read_counters()
    h.only_nft().finish(
        0,
        stdout=kernel_json(
            {
                "bytes_from_client": [counted(MAC1, 1, 100), counted(MAC2, 2, 200)],
                "bytes_to_client4": [counted("192.0.2.10", 5, 5000)],
            }
        ),
    )
    assert d.result == {MAC1: (100, 0), MAC2: (200, 5000)}
    h.table.deauthorize(MAC1, EndReason.LOGOUT)
    h.clock.advance(0.1)
    batch = h.only_nft()
    assert "bytes_to_client4" not in batch.text and MAC1 in batch.text
    batch.finish(0)
    h.clock.advance(0)
    assert h.conntrack_running() == []
    # MAC2's own end removes it, and flushes.
    h.table.deauthorize(MAC2, EndReason.LOGOUT)
    h.clock.advance(0.1)
    assert "delete element inet portald bytes_to_client4 { 192.0.2.10 }" in h.only_nft().text


def test_a_signed_in_device_that_moves_is_counted_at_its_new_address() -> None:
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.10"))
    where = {MAC1: frozenset({"192.0.2.10"})}
    h.firewall.addresses_changed(lambda mac: where.get(mac, frozenset()))
    h.clock.advance(0.1)
    assert h.nft_running() == []  # still there: nothing to do
    where[MAC1] = frozenset({"192.0.2.33", "2001:db8::33"})
    with capturedLogs():
        h.firewall.addresses_changed(lambda mac: where.get(mac, frozenset()))
    h.clock.advance(0.1)
    batch = h.only_nft()
    assert batch.text == lines(
        ruleset.forget_counter(h.firewall.plan, ipaddress.ip_address("192.0.2.10")),
        ruleset.count_to(h.firewall.plan, ipaddress.ip_address("192.0.2.33")),
    )
    batch.finish(0)
    h.clock.advance(0)
    d = h.firewall.read_counters()
    h.only_nft().finish(
        0,
        stdout=kernel_json(
            {
                "bytes_from_client": [counted(MAC1, 1, 100)],
                "bytes_to_client4": [counted("192.0.2.10", 9, 9000), counted("192.0.2.33", 3, 300)],
            }
        ),
    )
    assert d.result == {MAC1: (100, 300)}
    # Its lease gone altogether: left as it is.  Its logout removes the new counter.
    where.clear()
    h.firewall.addresses_changed(lambda mac: where.get(mac, frozenset()))
    h.table.deauthorize(MAC1, EndReason.LOGOUT)
    h.clock.advance(0.1)
    text = h.only_nft().text
    assert "delete element inet portald bytes_to_client4 { 192.0.2.33 }" in text
    assert "192.0.2.10" not in text


def test_a_whole_load_counts_a_moved_device_at_its_new_address() -> None:
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.10"))
    moved_to(h, "192.0.2.33")
    h.only_nft().finish(0)
    h.clock.advance(0)
    h.firewall.reload()
    h.clock.advance(0)
    h.only_nft().finish(1)  # the read of the old table
    load = h.only_nft().text
    assert "192.0.2.33" in load and "192.0.2.10" not in load


def test_a_move_carries_the_download_counter_and_logout_flushes_the_new_address() -> None:
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.10"))
    assert read(h, {"192.0.2.10": 4000})[MAC1] == (1, 4000)
    moved_to(h, "192.0.2.33")
    batch = h.only_nft().text
    assert "add element inet portald bytes_to_client4 { 192.0.2.33 counter packets 40 bytes 4000 }" in batch
    h.only_nft().finish(0)
    h.table.deauthorize(MAC1, EndReason.LOGOUT)
    h.clock.advance(0.1)
    h.only_nft().finish(0)
    h.clock.advance(0)
    assert [i.args for i in h.conntrack_running()] == [("-D", "-s", "192.0.2.33")]


def test_moving_onto_an_address_another_device_still_names_makes_it_the_movers() -> None:
    # MAC2 signed in at .10 after MAC1 did at .20; MAC2's lease lapsed
    # (it stays where it was); the DHCP server gives .10 to MAC1.
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.20"), (MAC2, "192.0.2.10"))
    where = {MAC1: frozenset({"192.0.2.10"})}
    with capturedLogs():
        h.firewall.addresses_changed(lambda mac: where.get(mac, frozenset()))
    h.clock.advance(0.1)
    h.only_nft().finish(0)
    counters = read(h, {"192.0.2.10": 5000, "192.0.2.20": 100})
    assert counters[MAC1] == (1, 5000) and counters[MAC2] == (1, 0)


def test_two_sessions_at_one_address_give_a_whole_load_one_counter() -> None:
    h = Harness()
    signed_in(h, (MAC1, "192.0.2.10"), (MAC2, "192.0.2.10"))
    load = h.start()
    assert load.text.count("192.0.2.10 counter") == 1
    load.finish(0)
    h.clock.advance(0)
    counters = read(h, {"192.0.2.10": 700})
    assert counters[MAC2] == (1, 700) and counters[MAC1] == (1, 0)


def test_signing_in_again_after_a_move_forgets_the_moved_counter() -> None:
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.10"))
    moved_to(h, "192.0.2.33")
    h.only_nft().finish(0)
    h.authorize(MAC1, "192.0.2.50")
    h.clock.advance(0.1)
    text = h.only_nft().text
    assert "delete element inet portald bytes_to_client4 { 192.0.2.33 }" in text
    assert "192.0.2.10" not in text


def test_a_reading_never_goes_down_while_a_move_is_on_its_way() -> None:
    # A sample read between the move and its batch: the last reading, not 0
    # (the limits would take 0 for a reset and count the 4000 twice).
    h = Harness()
    h.started()
    signed_in(h, (MAC1, "192.0.2.10"))
    assert read(h, {"192.0.2.10": 4000})[MAC1] == (1, 4000)
    with capturedLogs():
        h.firewall.addresses_changed(lambda mac: frozenset({"192.0.2.33"}))
    assert read(h, {"192.0.2.10": 4100})[MAC1] == (1, 4000)  # the batch has not run
    h.clock.advance(0.1)
    h.only_nft().finish(0)
    assert read(h, {"192.0.2.33": 4500})[MAC1] == (1, 4500)


def test_walled_garden_answers_open_addresses_for_their_ttl() -> None:
    h = Harness(FULL_YAML)
    h.started()
    with capturedLogs() as events:
        h.firewall.on_walled_garden_answer(
            ["203.0.113.200", "2001:db8:e::1", "not-an-ip", "203.0.113.70"], 600
        )
    assert any("not-an-ip" in str(e.get("text")) for e in events)
    h.clock.advance(0)
    text = h.only_nft().text
    assert "add element inet guests walled_garden_dns4 { 203.0.113.200 timeout 600000ms }" in text
    assert "add element inet guests walled_garden_dns6 { 2001:db8:e::1 timeout 600000ms }" in text
    assert "203.0.113.70" not in text  # inside the configured 203.0.113.64/26 already
    h.only_nft().finish(0)
    # The same answer again soon after changes nothing; a short TTL gets the floor.
    h.firewall.on_walled_garden_answer(["203.0.113.200"], 600)
    h.firewall.on_walled_garden_answer(["203.0.113.201"], 0)
    h.clock.advance(0)
    assert h.only_nft().text == lines(
        ruleset.learn(h.firewall.plan, ipaddress.ip_address("203.0.113.201"), 60)
    )


def test_learned_addresses_are_kept_when_the_table_is_rebuilt() -> None:
    h = Harness()
    h.started()
    h.firewall.on_walled_garden_answer(["203.0.113.200"], 300)
    h.clock.advance(0)
    h.only_nft().finish(0)
    h.clock.advance(100)
    d = h.firewall.reload()
    h.clock.advance(0)
    h.only_nft().finish(1)
    load = h.only_nft()
    assert "203.0.113.200 timeout 200000ms" in load.text
    assert not d.called
    load.finish(0)
    h.clock.advance(0)
    assert d.called


def test_read_counters_by_mac_in_both_directions() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.authorize(MAC2, "2001:db8::20")
    h.authorize(MAC3, "192.0.2.30")
    h.clock.advance(0)
    h.only_nft().finish(0)
    d = h.firewall.read_counters()
    read = h.only_nft()
    assert read.args == ("-j", "list", "table", "inet", "portald")
    read.finish(
        0,
        stdout=kernel_json(
            {
                "bytes_from_client": [counted(MAC1, 3, 300), counted(MAC2, 4, 400)],
                "bytes_to_client4": [counted("192.0.2.10", 5, 5000)],
                "bytes_to_client6": [counted("2001:db8::20", 6, 6000)],
            }
        ),
    )
    assert d.result == {MAC1: (300, 5000), MAC2: (400, 6000)}


def test_read_counters_when_nft_fails_or_talks_nonsense() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    # Nothing read is not "no traffic": the read fails, and nobody is idle for it.
    first = h.firewall.read_counters()
    h.only_nft().finish(1, stderr=b"Error: No such file or directory\n")
    first.addErrback(lambda failure: failure.trap(CountersUnavailable) and "unavailable")
    assert first.result == "unavailable"
    second = h.firewall.read_counters()
    with capturedLogs():
        h.only_nft().finish(0, stdout=b"{not json")
    second.addErrback(lambda failure: failure.trap(CountersUnavailable) and "unavailable")
    assert second.result == "unavailable"


def test_a_login_during_a_whole_load_has_its_counters_read() -> None:
    h = Harness()
    h.authorize(MAC1, "192.0.2.10")
    load = h.start()
    h.authorize(MAC2, "192.0.2.20")  # while nft loads the snapshot without it
    load.finish(0)
    h.clock.advance(0)
    h.only_nft().finish(0)  # the batch that grants MAC2
    d = h.firewall.read_counters()
    h.only_nft().finish(
        0,
        stdout=kernel_json(
            {
                "bytes_from_client": [counted(MAC1, 1, 100), counted(MAC2, 2, 200)],
                "bytes_to_client4": [counted("192.0.2.10", 1, 1000), counted("192.0.2.20", 2, 2000)],
            }
        ),
    )
    assert d.result == {MAC1: (100, 1000), MAC2: (200, 2000)}


def test_stop_keeps_the_table_and_applies_what_is_pending() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    in_flight = h.only_nft()
    h.table.deauthorize(MAC1, EndReason.ADMIN)
    stopped = h.firewall.stopService()
    assert not stopped.called
    in_flight.finish(0)
    last = h.only_nft()
    assert "delete element inet portald authorized { 02:00:00:00:00:01 }" in last.text
    assert "delete table" not in last.text
    last.finish(0)
    assert stopped.called
    assert h.firewall_calls() == []


def test_stop_removes_the_table_when_configured() -> None:
    h = Harness(FULL_YAML)
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    stopped = h.firewall.stopService()
    remove = h.only_nft()
    assert remove.text == "table inet guests {}\ndelete table inet guests\n"
    remove.finish(0)
    assert stopped.called
    assert h.firewall_calls() == []


def test_stop_during_a_backoff_cancels_the_retry() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    h.only_nft().finish(1)
    assert h.clock.getDelayedCalls()
    stopped = h.firewall.stopService()
    h.only_nft().finish(0)  # the one last try of what is pending
    assert stopped.called and h.firewall_calls() == []


def test_applied_fires_once_changes_are_in_the_kernel() -> None:
    h = Harness()
    h.started()
    assert h.firewall.applied().called
    h.authorize(MAC1, "192.0.2.10")
    waiting = h.firewall.applied()
    h.clock.advance(0)
    assert not waiting.called
    h.only_nft().finish(0)
    h.clock.advance(0)
    assert waiting.called


def test_applied_fires_with_its_own_batch_not_when_the_queue_drains() -> None:
    # Under steady load the queue may never be empty: a login's waiter must
    # fire once the batch carrying its change is in, whatever came after.
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    first_login = h.firewall.applied()
    h.clock.advance(0)
    first = h.only_nft()
    h.authorize(MAC2, "192.0.2.20")  # queued while the first batch runs
    second_login = h.firewall.applied()
    first.finish(0)
    assert first_login.called and not second_login.called
    h.clock.advance(0)
    h.authorize(MAC3, "192.0.2.30")
    h.only_nft().finish(0)
    assert second_login.called


def test_applied_waits_for_a_failed_batch_to_succeed() -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    login = h.firewall.applied()
    h.clock.advance(0)
    h.only_nft().finish(1, stderr=b"Error: Could not process rule\n")
    assert not login.called
    h.clock.advance(1)  # the retry
    h.only_nft().finish(0)
    assert login.called


def test_a_bug_in_a_callback_does_not_stall_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()
    h.started()
    h.authorize(MAC1, "192.0.2.10")
    h.clock.advance(0)
    monkeypatch.setattr(h.firewall, "_flush_connections", lambda ips: 1 / 0)
    with capturedLogs():
        h.only_nft().finish(0)
    monkeypatch.undo()
    assert h.firewall.stats.failures == 1
    h.clock.advance(0.5)
    h.only_nft().finish(1)  # rebuilding: read
    assert MAC1 in h.only_nft().text


def test_restored_sessions_keep_their_connections() -> None:
    h = Harness()
    h.clock.advance(1000)
    # As at a restart: the store puts sessions back before the services start.
    h.table.restore(Session(MAC1, "192.0.2.10", "click-through", started=400.0, expires=4000.0))
    load = h.start()
    assert MAC1 in load.text
    load.finish(0)
    h.clock.advance(0)
    assert h.runner.running() == []


def test_connection_flushes_run_a_few_at_a_time() -> None:
    h = Harness()
    h.started()
    for n in range(10):
        h.authorize(f"02:00:00:00:01:{n:02x}", f"192.0.2.{100 + n}")
    h.clock.advance(0)
    h.only_nft().finish(0)
    assert len(h.conntrack_running()) == 4
    for _ in range(10):
        h.conntrack_running()[0].finish(0)
    assert h.conntrack_running() == []
    assert len([i for i in h.runner.invocations if i.executable == CONNTRACK]) == 10


def test_the_service_tree_wires_the_configured_backend(tmp_path) -> None:
    from twisted.internet.testing import MemoryReactorClock

    from portald.firewall.none import NoFirewall
    from portald.tap import build_service
    from tests.tls_support import LabCA

    certificate, key = LabCA.make().issue(tmp_path, "portal.example")
    text = FULL_YAML.replace("/etc/portald/portal.crt", str(certificate)).replace(
        "/etc/portald/portal.key", str(key)
    ) + (
        f"state:\n  database: {tmp_path / 'sessions.sqlite3'}\ncontrol:\n  socket: {tmp_path / 'control.sock'}\n"
    )
    reactor = MemoryReactorClock()
    reactor.advance(time.time())  # the certificate is checked against the reactor's clock
    service = build_service(config(text), reactor)
    # HTTPS on both portal addresses, from the one certificate.
    assert service.getServiceNamed("https").args[0] == 8443
    assert service.getServiceNamed("https6").kwargs["interface"] == "2001:db8::1"
    assert service.getServiceNamed("https").args[2] is service.getServiceNamed("tls")
    assert isinstance(service.firewall, NftablesFirewall)
    assert service.firewall.parent is service
    assert service.limits._source is service.firewall
    service.store.close()
    none = build_service(config(text.replace("backend: nftables", "backend: none")), reactor)
    assert isinstance(none.firewall, NoFirewall) and none.limits._source is none.activity
    none.store.close()


def test_leases_go_into_the_first_load_and_then_only_their_changes() -> None:
    h = Harness()
    h.firewall.leases_changed({"192.0.2.10": MAC1, "192.0.2.20": MAC2, "2001:db8::5": MAC1})
    load = h.start()
    assert "192.0.2.10 . " + MAC1 in load.text and "192.0.2.20 . " + MAC2 in load.text
    assert "2001:db8::5" not in load.text  # IPv4 leases only
    load.finish(0)
    h.clock.advance(0)
    assert h.runner.running() == []
    # .10 is leased to MAC3 now, .20 is free, .30 is new; MAC1 is gone.
    h.firewall.leases_changed({"192.0.2.10": MAC3, "192.0.2.30": MAC2})
    h.clock.advance(0)
    plan = h.firewall.plan
    assert h.only_nft().text == lines(
        ruleset.unlease(plan, "192.0.2.10", MAC1),
        ruleset.unlease(plan, "192.0.2.20", MAC2),
        ruleset.lease(plan, "192.0.2.10", MAC3),
        ruleset.lease(plan, "192.0.2.30", MAC2),
    )
    h.only_nft().finish(0)
    h.clock.advance(0)
    # The same leases again: nothing to do.
    h.firewall.leases_changed({"192.0.2.10": MAC3, "192.0.2.30": MAC2})
    h.clock.advance(0)
    assert h.runner.running() == []


class _BlockingNft:
    """nft as run before the reactor: C{has_table} answers the listing; loads are kept."""

    def __init__(self, has_table: bool, load_status: int = 0) -> None:
        self.has_table = has_table
        self.load_status = load_status
        self.loaded: list[str] = []

    def __call__(self, argv, stdin: bytes) -> tuple[int, bytes]:
        if "list" in argv:
            return (0, b"") if self.has_table else (1, b"Error: No such file or directory")
        self.loaded.append(stdin.decode())
        return self.load_status, b"Error: Could not process rule" if self.load_status else b""


def test_with_no_table_in_the_kernel_the_closed_one_goes_in_before_the_listeners_open() -> None:
    nft = _BlockingNft(has_table=False)
    h = Harness(run_before_reactor=nft)
    h.authorize(MAC1, "192.0.2.10", 600)  # restored from the store
    h.firewall.privilegedStartService()
    (text,) = nft.loaded
    client = ruleset.AuthorizedClient(MAC1, ipaddress.ip_address("192.0.2.10"), 600.0)
    assert text == ruleset.ruleset(h.firewall.plan, [client])
    # Nothing asynchronous happened: the reactor has not run yet.
    assert h.runner.running() == []


def test_a_table_left_in_the_kernel_is_kept_as_it_is_until_the_first_load() -> None:
    nft = _BlockingNft(has_table=True)
    Harness(run_before_reactor=nft).firewall.privilegedStartService()
    assert nft.loaded == []


def test_a_refused_closed_table_is_logged_and_the_start_goes_on() -> None:
    nft = _BlockingNft(has_table=False, load_status=1)
    h = Harness(run_before_reactor=nft)
    with capturedLogs() as events:
        h.firewall.privilegedStartService()
    assert any("Could not process rule" in str(e.get("message", "")) for e in events), events
    h.start().finish(0)  # the queue's first load still comes


def test_staff_allow_and_disallow_change_the_allowed_set_and_disallow_flushes() -> None:
    h = Harness()
    h.started()
    h.firewall.leases_changed({"192.0.2.10": MAC1})
    h.clock.advance(0)
    h.only_nft().finish(0)
    h.table.allow(MAC1)
    h.clock.advance(0)
    allow = h.only_nft()
    assert "add element inet portald allowed_macs { 02:00:00:00:00:01 }" in allow.text
    allow.finish(0)
    # Letting a device in cuts nothing.
    assert h.conntrack_running() == []
    h.table.disallow(MAC1)
    h.clock.advance(0)
    disallow = h.only_nft()
    assert disallow.text.rstrip().endswith("delete element inet portald allowed_macs { 02:00:00:00:00:01 }")
    disallow.finish(0)
    # Its open connections end with its pass.
    assert [(i.executable, i.args) for i in h.conntrack_running()] == [
        (CONNTRACK, ("-D", "-s", "192.0.2.10"))
    ]
