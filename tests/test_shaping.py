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
    assert tree(PLAN, "pfifo limit 1000", ["lan"]) == [
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


def test_sessions_get_their_classes_and_lose_them_and_staff_is_not_shaped() -> None:
    clock = Clock()
    table = AuthorizationTable(clock)
    runner = Recorder()
    shaper = Shaper(parse_config(SHAPED), table, clock, runner)
    table.add_observer(shaper)
    table.authorize("02:00:00:00:00:01", ip="192.0.2.10", method="click-through", duration=3600)
    shaper.startService()
    assert shaper.leaf == "pfifo limit 1000"  # no fq_codel in this kernel
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
