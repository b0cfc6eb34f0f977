"""
Per-device rates: the configuration's checks, the tc and nft text the
shaper generates, what it takes for its own, and its changes per session
through a recording process runner on a Clock.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from portald.config import ConfigError, parse_config
from portald.firewall.process import ProcessResult
from portald.firewall.shaping import Shaped, Shaper, ShapingPlan, classifier, device_lines, roots, tree
from portald.table import AuthorizationTable, EndReason

BASE = """\
portal: {address: 192.0.2.1, subnets: [192.0.2.0/24], interface: lan}
leases: {sources: [{format: dnsmasq, path: /x}]}
firewall: {backend: nftables, table: guests}
"""
SHAPED = (
    BASE
    + """\
sessions: {rate_down: 4Mbit, rate_up: 2Mbit}
shaping: {uplink: wan}
auth:
  methods:
    - {method: click-through}
    - {method: access-code, codes: ["7"], rate_down: 10Mbit}
"""
)
PLAN = ShapingPlan("lan", "wan", "guests_shaping")


def test_rates_per_way_and_never_for_staff() -> None:
    config = parse_config(SHAPED)
    assert config.rates_for("click-through") == (4_000_000, 2_000_000)
    assert config.rates_for("access-code") == (10_000_000, 2_000_000)
    assert config.rates_for("staff") == (0, 0)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (BASE + "sessions: {rate_down: 4Mbit}\n", "shaping.uplink", "the interface towards the internet"),
        (
            BASE.replace("nftables", "none") + "sessions: {rate_up: 1Mbit}\n",
            "sessions.rate_down",
            "need firewall.backend",
        ),
        (
            BASE + "sessions: {rate_down: fast}\nshaping: {uplink: wan}\n",
            "sessions.rate_down",
            "a rate such as",
        ),
        (BASE + "sessions: {rate_down: 1bit}\nshaping: {uplink: wan}\n", "sessions.rate_down", "from 8kbit"),
        (
            BASE + "sessions: {rate_down: 1Mbit}\nshaping: {uplink: lan}\n",
            "shaping.uplink",
            "another interface",
        ),
    ],
)
def test_rates_that_cannot_be_shaped_are_keyed_errors(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.key == key and message in str(caught.value)


def test_the_tree_classes_and_classifier() -> None:
    assert tree(PLAN, "pfifo", ["lan"]) == [
        "qdisc del dev lan root",
        "qdisc replace dev lan root handle 1: htb default 1",
        "class replace dev lan parent 1: classid 1:1 htb rate 100gbit quantum 60000",
        "qdisc replace dev lan parent 1:1 handle fffe: pfifo limit 1000",
        "qdisc replace dev wan root handle 1: htb default 1",
        "class replace dev wan parent 1: classid 1:1 htb rate 100gbit quantum 60000",
        "qdisc replace dev wan parent 1:1 handle fffe: pfifo limit 1000",
    ]
    assert device_lines(PLAN, Shaped(0x10, 4_000_000, 0), "fq_codel") == [
        "class replace dev lan parent 1: classid 1:10 htb rate 4000000bit ceil 4000000bit",
        "qdisc replace dev lan parent 1:10 handle 10: fq_codel",
        "class replace dev wan parent 1: classid 1:10 htb rate 100000000000bit ceil 100000000000bit",
        "qdisc replace dev wan parent 1:10 handle 10: fq_codel",
    ]
    text = classifier(PLAN, {"02:00:00:00:00:01": Shaped(0x10, 1, 1)})
    assert "elements = { 02:00:00:00:00:01 : 0x10 }" in text and "elements = { 0x10 : 1:10 }" in text
    assert 'iifname "lan" ct mark set ether saddr map @device_class' in text


def test_only_its_own_root_is_taken_down() -> None:
    assert roots(b'[{"kind":"htb","handle":"1:","root":true}]') == "ours"
    assert roots(b'[{"kind":"noqueue","handle":"0:","root":true}]') == "default"
    assert roots(b'[{"kind":"cake","handle":"8001:","root":true}]') == "cake 8001:"


class Recorder:
    """Every tc and nft run, answered as the kernel would (all succeed unless told)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[str], str]] = []
        self.fail_kinds: set[str] = {"fq_codel"}

    def run(self, executable: str, args, stdin: bytes = b""):
        text = stdin.decode()
        self.runs.append((executable.rsplit("/", 1)[-1], list(args), text))
        if args[:2] == ["-j", "qdisc"]:
            return succeed(ProcessResult(0, b'[{"kind":"noqueue","handle":"0:","root":true}]'))
        if any(kind in text for kind in self.fail_kinds) and "-force" not in args:
            return succeed(ProcessResult(1, stderr=b"Error: Specified qdisc kind is unknown."))
        return succeed(ProcessResult(0))


def shaper_on(text: str) -> tuple[Clock, AuthorizationTable, Recorder, Shaper]:
    """A Shaper following a table on a Clock, its runs recorded."""
    clock = Clock()
    table = AuthorizationTable(clock)
    runner = Recorder()
    shaper = Shaper(parse_config(text), table, clock, runner)
    table.add_observer(shaper)
    return clock, table, runner, shaper


def test_sessions_get_their_classes_and_lose_them_and_staff_is_not_shaped() -> None:
    clock, table, runner, shaper = shaper_on(SHAPED)
    table.authorize("02:00:00:00:00:01", ip="192.0.2.10", method="click-through", duration=3600)
    shaper.startService()
    assert shaper.leaf == "pfifo"  # no fq_codel in this kernel
    assert shaper.devices == {"02:00:00:00:00:01": Shaped(0x10, 4_000_000, 2_000_000)}
    runner.runs.clear()
    table.authorize("02:00:00:00:00:02", ip="192.0.2.11", method="staff", duration=3600)
    assert runner.runs == []
    table.authorize("02:00:00:00:00:03", ip="192.0.2.12", method="access-code", duration=3600)
    (tc, nft) = runner.runs
    assert "classid 1:11 htb rate 10000000bit" in tc[2] and "02:00:00:00:00:03 : 0x11" in nft[2]
    runner.runs.clear()
    table.deauthorize("02:00:00:00:00:01", EndReason.LOGOUT)
    (tc, nft) = runner.runs
    assert tc[2] == "class del dev lan classid 1:10\nclass del dev wan classid 1:10\n"
    assert "delete element inet guests_shaping device_class { 02:00:00:00:00:01 }" in nft[2]
    assert set(shaper.devices) == {"02:00:00:00:00:03"}


LINE = ShapingPlan("lan", "wan", "guests_shaping", line_down=50_000_000, line_up=10_000_000)


def test_under_a_line_every_device_is_guaranteed_a_hundredth_and_shares_the_rest() -> None:
    lines = tree(LINE, "fq_codel", ())
    assert "class replace dev lan parent 1: classid 1:2 htb rate 50000000bit ceil 50000000bit" in lines
    assert "class replace dev wan parent 1: classid 1:2 htb rate 10000000bit ceil 10000000bit" in lines
    # One with a rate of its own: up to it; one without: up to the whole line.  Same quantum: equal shares.
    assert device_lines(LINE, Shaped(0x10, 4_000_000, 0), "fq_codel") == [
        "class replace dev lan parent 1:2 classid 1:10 htb rate 500000bit ceil 4000000bit quantum 1514",
        "qdisc replace dev lan parent 1:10 handle 10: fq_codel",
        "class replace dev wan parent 1:2 classid 1:10 htb rate 100000bit ceil 10000000bit quantum 1514",
        "qdisc replace dev wan parent 1:10 handle 10: fq_codel",
    ]
    # A rate above the line is the line.
    assert "rate 500000bit ceil 50000000bit" in device_lines(LINE, Shaped(0x11, 90_000_000, 0), "fq_codel")[0]


def test_with_a_line_every_session_is_shaped_staff_too() -> None:
    clock, table, _, shaper = shaper_on(
        BASE + "shaping: {uplink: wan, uplink_rate_down: 50Mbit, uplink_rate_up: 10Mbit}\n"
    )
    shaper.startService()
    table.authorize("02:00:00:00:00:01", ip="192.0.2.10", method="click-through", duration=3600)
    table.authorize("02:00:00:00:00:02", ip="192.0.2.11", method="staff", duration=3600)
    assert shaper.devices == {
        "02:00:00:00:00:01": Shaped(0x10, 0, 0),
        "02:00:00:00:00:02": Shaped(0x11, 0, 0),
    }


def test_a_rate_change_touches_only_that_devices_classes() -> None:
    # No rate in the file: vouchers and staff give them.
    clock, table, runner, shaper = shaper_on(BASE + "shaping: {uplink: wan}\n")
    shaper.startService()
    runner.runs.clear()
    table.authorize("02:00:00:00:00:01", ip="192.0.2.10", method="click-through", duration=3600)
    assert runner.runs == [] and shaper.devices == {}
    table.authorize(
        "02:00:00:00:00:02", ip="192.0.2.11", method="voucher", duration=3600, rate_down=4_000_000
    )
    assert shaper.devices == {"02:00:00:00:00:02": Shaped(0x10, 4_000_000, 0)}
    runner.runs.clear()
    table.set_rates("02:00:00:00:00:02", 8_000_000, 1_000_000)
    (tc,) = runner.runs  # in place: the classifier already has it
    assert tc[2].splitlines() == [
        "class replace dev lan parent 1: classid 1:10 htb rate 8000000bit ceil 8000000bit",
        "qdisc replace dev lan parent 1:10 handle 10: pfifo limit 66",  # 100 ms of 8 Mbit/s
        "class replace dev wan parent 1: classid 1:10 htb rate 1000000bit ceil 1000000bit",
        "qdisc replace dev wan parent 1:10 handle 10: pfifo limit 16",  # the least
    ]
    assert shaper.rates_of(table.session("02:00:00:00:00:02")) == (8_000_000, 1_000_000)
    runner.runs.clear()
    table.set_rates("02:00:00:00:00:01", 2_000_000, None)  # newly shaped: classes and classifier
    (tc, nft) = runner.runs
    assert "classid 1:11 htb rate 2000000bit" in tc[2] and "02:00:00:00:00:01 : 0x11" in nft[2]
    runner.runs.clear()
    table.set_rates("02:00:00:00:00:02", None, None)  # back to the way in's: unshaped
    (tc, nft) = runner.runs
    assert tc[2] == "class del dev lan classid 1:10\nclass del dev wan classid 1:10\n"


def test_a_file_with_a_line_rate_needs_the_uplink() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(BASE + "shaping: {uplink_rate_down: 50Mbit}\n")
    assert raised.value.key == "shaping.uplink"


def test_changes_waiting_go_out_together_in_one_tc_batch_and_one_nft_run() -> None:
    from twisted.internet.defer import Deferred

    clock, table, recorder, shaper = shaper_on(SHAPED)
    shaper.startService()
    held: list[Deferred] = []

    class Holding:
        def run(self, executable, args, stdin=b""):
            recorder.runs.append((executable.rsplit("/", 1)[-1], list(args), stdin.decode()))
            held.append(Deferred())
            return held[-1]

    shaper._runner = Holding()
    recorder.runs.clear()
    for index in range(1, 4):
        table.authorize(
            f"02:00:00:00:00:0{index}", ip=f"192.0.2.1{index}", method="click-through", duration=60
        )
    assert len(recorder.runs) == 1  # the first device's tc batch; the others wait
    held[0].callback(ProcessResult(0))
    held[1].callback(ProcessResult(0))  # its nft run
    assert len(recorder.runs) == 3
    tc, nft = recorder.runs[2], None
    assert tc[0] == "tc" and "classid 1:11" in tc[2] and "classid 1:12" in tc[2]
    held[2].callback(ProcessResult(0))
    nft = recorder.runs[3]
    assert nft[0] == "nft" and "02:00:00:00:00:02" in nft[2] and "02:00:00:00:00:03" in nft[2]
    held[3].callback(ProcessResult(0))
    assert shaper.settled and len(recorder.runs) == 4


def test_a_fifo_leaf_holds_a_tenth_of_a_second_of_its_class() -> None:
    from portald.firewall.shaping import leaf_qdisc

    assert leaf_qdisc("fq_codel", 4_000_000) == "fq_codel"
    assert leaf_qdisc("pfifo", 50_000_000) == "pfifo limit 412"
    assert leaf_qdisc("pfifo", 500_000) == "pfifo limit 16"
    assert leaf_qdisc("pfifo", 100 * 10**9) == "pfifo limit 1000"
