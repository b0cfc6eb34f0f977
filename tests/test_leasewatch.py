"""The lease watcher on a Clock: debounce, polling, rename-over, rewrite in place, expiry, merging."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.filepath import FilePath

from portald.leases.arp import read_proc_net_arp
from portald.leases.model import Lease
from portald.leases.source import WatchedFile
from portald.leases.watcher import LeaseWatcher
from portald.neighbours import Neighbours

NOW = 1_795_581_800
DEBOUNCE = 0.1
POLL = 5.0


def dnsmasq_line(ip: str, mac: str, name: str = "*", expiry: int = 0) -> str:
    return f"{expiry} {mac} {ip} {name} *\n"


class Harness:
    """A watcher on a Clock over files in a tmp dir; events are delivered by hand."""

    def __init__(self, tmp_path: Path, files: dict[str, str], **kwargs) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.neighbours = Neighbours()
        self.updates: list[dict[str, Lease]] = []
        self.paths = {name: tmp_path / name for name in files}
        self.watcher = LeaseWatcher(
            [WatchedFile(fmt, self.paths[name]) for name, fmt in files.items()],
            self.neighbours,
            self.clock,
            debounce=DEBOUNCE,
            poll_interval=POLL,
            on_update=self.updates.append,
            **kwargs,
        )

    def write(self, name: str, text: str, *, notify: bool = True) -> None:
        self.paths[name].write_text(text)
        if notify:
            self.event(name)

    def event(self, name: str) -> None:
        self.watcher.changed(FilePath(str(self.paths[name])))

    def map(self) -> dict[str, str]:
        return self.neighbours.snapshot()


@pytest.fixture
def one(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path, {"dnsmasq.leases": "dnsmasq"})
    harness.paths["dnsmasq.leases"].write_text(
        dnsmasq_line("192.0.2.57", "02:00:00:aa:bb:cc", "phone-of-ann")
    )
    return harness


def messages(events) -> list[str]:
    return [formatEvent(event) for event in events]


def test_start_reads_the_file_and_logs_each_lease(one: Harness) -> None:
    with capturedLogs() as events:
        one.watcher.startService()
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc"}
    assert "lease 192.0.2.57 -> 02:00:00:aa:bb:cc (phone-of-ann)" in messages(events)
    one.watcher.stopService()
    assert one.clock.getDelayedCalls() == []


def test_debounce_reads_once_after_a_burst(one: Harness) -> None:
    one.watcher.startService()
    for n in range(5):
        one.write("dnsmasq.leases", dnsmasq_line(f"192.0.2.{60 + n}", "02:00:00:00:00:01"))
        one.clock.advance(DEBOUNCE / 2)
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc"}  # still waiting for quiet
    one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.64": "02:00:00:00:00:01"}
    assert len(one.updates) == 2  # the start, and one read for the whole burst


def test_debounce_does_not_wait_for_ever(one: Harness) -> None:
    one.watcher.startService()
    one.write("dnsmasq.leases", dnsmasq_line("192.0.2.60", "02:00:00:00:00:01"))
    # Events keep coming faster than the debounce interval...
    for _ in range(30):
        one.clock.advance(DEBOUNCE / 2)
        one.event("dnsmasq.leases")
    # ...yet the file was read within ten intervals of the first.
    assert one.map() == {"192.0.2.60": "02:00:00:00:00:01"}


def test_events_for_other_files_are_ignored(one: Harness, tmp_path: Path) -> None:
    one.watcher.startService()
    one.watcher.changed(FilePath(str(tmp_path / "something-else")))
    assert one.clock.getDelayedCalls() == [] or all(
        call.getTime() >= NOW + POLL for call in one.clock.getDelayedCalls()
    )


def test_poll_notices_a_change_without_any_event(one: Harness) -> None:
    one.watcher.startService()
    one.write("dnsmasq.leases", dnsmasq_line("192.0.2.58", "02:00:00:00:00:02"), notify=False)
    one.clock.advance(POLL - 0.01)
    assert "192.0.2.58" not in one.map()
    one.clock.advance(0.01)
    assert one.map() == {"192.0.2.58": "02:00:00:00:00:02"}


def test_poll_does_not_reread_an_unchanged_file(one: Harness) -> None:
    one.watcher.startService()
    reads = []
    source = one.watcher._sources[0]
    parse = source.parse
    source.parse = lambda text, now: reads.append(text) or parse(text, now)
    one.clock.pump([POLL] * 5)
    assert reads == []


def test_missing_file_at_start_is_picked_up_when_it_appears(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"dhcpd.leases": "isc-dhcpd"})
    with capturedLogs() as events:
        harness.watcher.startService()
    assert harness.map() == {}
    assert any("does not exist (yet); waiting for it" in m for m in messages(events))
    harness.write(
        "dhcpd.leases",
        "lease 192.0.2.9 { binding state active; ends never; hardware ethernet 02:00:00:00:00:09; }\n",
        notify=False,
    )
    harness.clock.advance(POLL)
    assert harness.map() == {"192.0.2.9": "02:00:00:00:00:09"}


def test_replaced_by_rename(tmp_path: Path) -> None:
    """ISC dhcpd writes a new file and renames it over the old one."""
    harness = Harness(tmp_path, {"dhcpd.leases": "isc-dhcpd"})
    block = "lease {ip} {{ binding state active; ends never; hardware ethernet {mac}; }}\n"
    harness.write("dhcpd.leases", block.format(ip="192.0.2.1", mac="02:00:00:00:00:01"), notify=False)
    harness.watcher.startService()
    new = tmp_path / "dhcpd.leases.1795581800"
    new.write_text(block.format(ip="192.0.2.2", mac="02:00:00:00:00:02"))
    os.replace(new, harness.paths["dhcpd.leases"])
    harness.event("dhcpd.leases")  # IN_MOVED_TO, on the directory's watch
    harness.clock.advance(DEBOUNCE)
    assert harness.map() == {"192.0.2.2": "02:00:00:00:00:02"}


def test_rename_with_same_size_and_mtime_is_seen_by_its_inode(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"dhcpd.leases": "isc-dhcpd"})
    block = "lease {ip} {{ binding state active; ends never; hardware ethernet {mac}; }}\n"
    path = harness.paths["dhcpd.leases"]
    path.write_text(block.format(ip="192.0.2.1", mac="02:00:00:00:00:01"))
    harness.watcher.startService()
    stat = path.stat()
    new = tmp_path / "dhcpd.leases.new"
    new.write_text(block.format(ip="192.0.2.2", mac="02:00:00:00:00:02"))
    os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(new, path)
    harness.clock.advance(POLL)
    assert harness.map() == {"192.0.2.2": "02:00:00:00:00:02"}


def test_truncate_and_rewrite_in_place_keeps_the_last_good_snapshot(one: Harness) -> None:
    """dnsmasq truncates its file and rewrites it; a reader may catch it empty or half written."""
    one.watcher.startService()
    path = one.paths["dnsmasq.leases"]
    full = dnsmasq_line("192.0.2.57", "02:00:00:aa:bb:cc", "phone-of-ann") + dnsmasq_line(
        "192.0.2.58", "02:00:00:00:00:02", "laptop"
    )
    with open(path, "r+") as f:
        f.truncate(0)
    one.event("dnsmasq.leases")
    one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc"}  # empty: not believed yet
    with open(path, "a") as f:
        f.write(full[:60])  # half of it, cut inside the second line
    one.event("dnsmasq.leases")
    one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc"}  # cut short: not believed
    with open(path, "a") as f:
        f.write(full[60:])
    one.event("dnsmasq.leases")
    one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc", "192.0.2.58": "02:00:00:00:00:02"}


def test_an_empty_file_that_stays_empty_empties_the_map(one: Harness) -> None:
    one.watcher.startService()
    one.write("dnsmasq.leases", "")
    one.clock.advance(DEBOUNCE)
    assert len(one.map()) == 1
    one.clock.advance(DEBOUNCE)  # the second look finds it still empty: believed
    assert one.map() == {}


def test_lease_expiry_removes_it_without_a_file_change(one: Harness) -> None:
    one.write(
        "dnsmasq.leases", dnsmasq_line("192.0.2.70", "02:00:00:00:00:70", expiry=NOW + 30), notify=False
    )
    one.watcher.startService()
    assert one.map() == {"192.0.2.70": "02:00:00:00:00:70"}
    one.clock.advance(29.9)
    assert one.map() == {"192.0.2.70": "02:00:00:00:00:70"}
    with capturedLogs() as events:
        one.clock.advance(0.1)
    assert one.map() == {}
    assert "lease expired 192.0.2.70 -> 02:00:00:00:00:70" in messages(events)


def test_ip_moves_to_another_mac_at_once(one: Harness) -> None:
    one.watcher.startService()
    with capturedLogs() as events:
        one.write("dnsmasq.leases", dnsmasq_line("192.0.2.57", "02:00:00:00:00:99", "someone-else"))
        one.clock.advance(DEBOUNCE)
    assert one.neighbours.mac_for("192.0.2.57") == "02:00:00:00:00:99"
    assert one.neighbours.ips_for("02:00:00:aa:bb:cc") == frozenset()
    assert "lease 192.0.2.57 -> 02:00:00:00:00:99 (someone-else)" in messages(events)


def test_mac_follows_its_new_ip(one: Harness) -> None:
    one.watcher.startService()
    with capturedLogs() as events:
        one.write("dnsmasq.leases", dnsmasq_line("192.0.2.80", "02:00:00:aa:bb:cc", "phone-of-ann"))
        one.clock.advance(DEBOUNCE)
    assert one.neighbours.ips_for("02:00:00:aa:bb:cc") == frozenset({"192.0.2.80"})
    assert one.neighbours.mac_for("192.0.2.57") is None
    assert "lease ended 192.0.2.57 -> 02:00:00:aa:bb:cc (released or removed)" in messages(events)


def test_sources_merge_and_the_longer_lease_wins(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"a.leases": "dnsmasq", "b.csv": "kea"})
    harness.paths["a.leases"].write_text(
        dnsmasq_line("192.0.2.1", "02:00:00:00:00:01", expiry=NOW + 100)
        + dnsmasq_line("192.0.2.2", "02:00:00:00:00:02", expiry=NOW + 100)
    )
    harness.paths["b.csv"].write_text(
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n"
        f"192.0.2.2,02:00:00:00:00:22,,120,{NOW + 200},1,0,0,,0,\n"
        f"192.0.2.3,02:00:00:00:00:03,,120,{NOW + 200},1,0,0,,0,\n"
    )
    harness.watcher.startService()
    assert harness.map() == {
        "192.0.2.1": "02:00:00:00:00:01",
        "192.0.2.2": "02:00:00:00:00:22",
        "192.0.2.3": "02:00:00:00:00:03",
    }
    harness.clock.advance(100)
    assert harness.map() == {"192.0.2.2": "02:00:00:00:00:22", "192.0.2.3": "02:00:00:00:00:03"}


def test_parse_problems_are_logged_once(one: Harness) -> None:
    one.watcher.startService()
    with capturedLogs() as events:
        for n in range(3):
            one.write("dnsmasq.leases", "rubbish\n" + dnsmasq_line(f"192.0.2.{90 + n}", "02:00:00:00:00:01"))
            one.clock.advance(DEBOUNCE)
    problems = [m for m in messages(events) if "line 1" in m]
    assert len(problems) == 1
    assert str(one.paths["dnsmasq.leases"]) in problems[0]
    assert one.map() == {"192.0.2.92": "02:00:00:00:00:01"}  # the good lines still count


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00garbage without a newline", b"rubbish\n", b"1 2 3\n4 5\n"])
def test_garbage_never_wipes_the_map_nor_raises(one: Harness, garbage: bytes) -> None:
    one.watcher.startService()
    with capturedLogs() as events:
        one.paths["dnsmasq.leases"].write_bytes(garbage)
        one.event("dnsmasq.leases")
        for _ in range(3):
            one.clock.advance(DEBOUNCE)
        one.clock.advance(POLL)  # read again by the poll too: still not believed
        one.event("dnsmasq.leases")
        one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc"}
    assert sum("no lease could be read; keeping its last 1 good leases" in m for m in messages(events)) == 1
    # A clean read is believed again.
    one.write("dnsmasq.leases", dnsmasq_line("192.0.2.58", "02:00:00:aa:bb:cc"))
    one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.58": "02:00:00:aa:bb:cc"}


KEA_HEADER = (
    "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n"
)


def kea_row(ip: str, mac: str, lifetime: int = 3600) -> str:
    return f"{ip},{mac},,{lifetime},{NOW + lifetime},1,0,0,,0,\n"


def test_kea_lease_file_cleanup_keeps_the_map(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"lease4.csv": "kea"})
    current = harness.paths["lease4.csv"]
    current.write_text(
        KEA_HEADER + kea_row("192.0.2.50", "02:00:00:00:00:01") + kea_row("192.0.2.51", "02:00:00:00:00:02")
    )
    harness.watcher.startService()
    assert harness.map() == {"192.0.2.50": "02:00:00:00:00:01", "192.0.2.51": "02:00:00:00:00:02"}
    # Kea's hourly cleanup: the file becomes .2, a new one holds the header;
    # then a release arrives in the new file.
    current.rename(tmp_path / "lease4.csv.2")
    harness.write("lease4.csv", KEA_HEADER)
    harness.clock.advance(DEBOUNCE)
    assert harness.map() == {"192.0.2.50": "02:00:00:00:00:01", "192.0.2.51": "02:00:00:00:00:02"}
    harness.write("lease4.csv", KEA_HEADER + kea_row("192.0.2.51", "02:00:00:00:00:02", lifetime=0))
    harness.clock.advance(DEBOUNCE)
    assert harness.map() == {"192.0.2.50": "02:00:00:00:00:01"}
    # The cleanup finishes: .2 compacted into .completed, which becomes .1.
    (tmp_path / "lease4.csv.2").rename(tmp_path / "lease4.csv.completed")
    harness.clock.advance(POLL)
    (tmp_path / "lease4.csv.completed").rename(tmp_path / "lease4.csv.1")
    harness.write(
        "lease4.csv",
        KEA_HEADER
        + kea_row("192.0.2.51", "02:00:00:00:00:02", lifetime=0)
        + kea_row("192.0.2.52", "02:00:00:00:00:03"),
    )
    harness.clock.advance(DEBOUNCE)
    assert harness.map() == {"192.0.2.50": "02:00:00:00:00:01", "192.0.2.52": "02:00:00:00:00:03"}


def test_neighbour_fallback_is_off_by_default(one: Harness) -> None:
    asked = []
    one.watcher._read_neighbours = lambda: asked.append(1) or {}
    one.watcher.startService()
    one.clock.advance(POLL)
    assert asked == []


def test_neighbour_fallback_only_for_ips_no_lease_explains(tmp_path: Path) -> None:
    kernel = {"192.0.2.57": "02:00:00:00:00:ff", "192.0.2.200": "02:00:00:00:02:00"}
    harness = Harness(
        tmp_path, {"dnsmasq.leases": "dnsmasq"}, neighbour_fallback=True, read_neighbours=lambda: kernel
    )
    harness.paths["dnsmasq.leases"].write_text(dnsmasq_line("192.0.2.57", "02:00:00:aa:bb:cc"))
    harness.watcher.startService()
    assert harness.map() == {"192.0.2.57": "02:00:00:aa:bb:cc", "192.0.2.200": "02:00:00:00:02:00"}
    kernel["192.0.2.201"] = "02:00:00:00:02:01"
    harness.clock.advance(POLL)  # the neighbour table is re-read on each poll
    assert harness.map()["192.0.2.201"] == "02:00:00:00:02:01"


def test_read_proc_net_arp(tmp_path: Path) -> None:
    path = tmp_path / "arp"
    path.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.0.2.10       0x1         0x2         02:00:00:00:00:0a     *        lan\n"
        "192.0.2.11       0x1         0x0         00:00:00:00:00:00     *        lan\n"
        "192.0.2.12       0x1         0x6         02:00:00:00:00:0C     *        lan\n"
    )
    assert read_proc_net_arp(path) == {"192.0.2.10": "02:00:00:00:00:0a", "192.0.2.12": "02:00:00:00:00:0c"}
    assert read_proc_net_arp(tmp_path / "missing") == {}


def test_a_parser_that_raises_keeps_the_last_good_snapshot(one: Harness) -> None:
    one.watcher.startService()

    def broken(text: str, now: float):
        raise RuntimeError("a parser bug")

    one.watcher._sources[0].parse = broken
    with capturedLogs() as events:
        one.write("dnsmasq.leases", dnsmasq_line("192.0.2.99", "02:00:00:00:00:99"))
        one.clock.advance(DEBOUNCE)
    assert one.map() == {"192.0.2.57": "02:00:00:aa:bb:cc"}
    assert any("keeping its last good leases" in m for m in messages(events))


def test_kea_problems_are_logged_against_their_own_file_and_line(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"lease4.csv": "kea"})
    older = tmp_path / "lease4.csv.2"
    older.write_text(KEA_HEADER + kea_row("192.0.2.50", "02:00:00:00:00:01") + "not,a,row\n")
    harness.paths["lease4.csv"].write_text(KEA_HEADER + "192.0.2.999,02:00:00:00:00:02,,60,1,1,0,0,,0,\n")
    with capturedLogs() as events:
        harness.watcher.startService()
        # The current file grows: the older file's problem is not logged again.
        harness.write(
            "lease4.csv",
            KEA_HEADER
            + "192.0.2.999,02:00:00:00:00:02,,60,1,1,0,0,,0,\n"
            + kea_row("192.0.2.51", "02:00:00:00:00:03"),
        )
        harness.clock.advance(DEBOUNCE)
    logged = [m for m in messages(events) if "(skipped)" in m]
    assert len(logged) == 2, logged
    assert any(m.startswith(f"{older}, line 3: ") for m in logged)
    assert any(m.startswith(f"{harness.paths['lease4.csv']}, line 2: ") for m in logged)
    assert harness.map() == {"192.0.2.50": "02:00:00:00:00:01", "192.0.2.51": "02:00:00:00:00:03"}


def test_kea_completed_cleanup_output_is_read_instead_of_its_inputs(tmp_path: Path) -> None:
    harness = Harness(tmp_path, {"lease4.csv": "kea"})
    (tmp_path / "lease4.csv.1").write_text(KEA_HEADER + kea_row("192.0.2.60", "02:00:00:00:00:06"))
    (tmp_path / "lease4.csv.completed").write_text(KEA_HEADER + kea_row("192.0.2.50", "02:00:00:00:00:01"))
    harness.paths["lease4.csv"].write_text(KEA_HEADER)
    harness.watcher.startService()
    assert harness.map() == {"192.0.2.50": "02:00:00:00:00:01"}


def test_a_failing_update_listener_costs_only_its_update(tmp_path: Path) -> None:
    def broken(leases: dict) -> None:
        raise RuntimeError("a listener's bug")

    harness = Harness(tmp_path, {"dnsmasq.leases": "dnsmasq"})
    harness.watcher._on_update = broken
    harness.paths["dnsmasq.leases"].write_text(dnsmasq_line("192.0.2.57", "02:00:00:aa:bb:cc"))
    with capturedLogs() as events:
        harness.watcher.startService()
        harness.write("dnsmasq.leases", dnsmasq_line("192.0.2.58", "02:00:00:aa:bb:cc"))
        harness.clock.advance(DEBOUNCE)
    assert harness.map() == {"192.0.2.58": "02:00:00:aa:bb:cc"}
    assert sum("a lease update listener failed" in m for m in messages(events)) == 2
