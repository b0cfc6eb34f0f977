"""
Per-device rates (C{sessions.rate_down}/C{rate_up}, per way in): an HTB
class per shaped device on the LAN interface's egress (its downloads) and on
the uplink's (its uploads), each with a fair leaf (fq_codel where the kernel
has it, a FIFO otherwise).  Packets are classified in nftables, by MAC, in
a table of the shaper's own: a device's packets mark their connection with
its class, and both directions of the connection are put in that class, so
a device's IPv6 is shaped with its IPv4.  Everything else (the portal's own
answers, devices without a rate) goes to the default class, unshaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from portald.config import Config
from portald.firewall.process import IProcessRunner, ProcessResult
from portald.rates import LEAST_RATE
from portald.table import AuthorizationTable, EndReason, IAuthorizationObserver, IRateObserver, Session

log = Logger()

# The leaf in each class: fq_codel where the kernel has it, else a FIFO.
LEAVES = ("fq_codel", "pfifo")
# A FIFO holds this much of its class's rate (fq_codel keeps its own queue
# short): a deep one would make a device's own traffic wait seconds, and
# keep TCP from sharing a line.
FIFO_DELAY = 0.1
FIFO_PACKETS = (16, 1000)
FIRST_MINOR, LAST_MINOR = 0x10, 0x1FFE
# Root qdiscs a machine has on its own; replacing them takes nothing from anyone.
DEFAULT_ROOTS = frozenset({"noqueue", "pfifo_fast", "mq", "fq_codel", "fq", "pfifo"})
RETRY_AFTER = 2.0


# With a line rate: the line's class, under which every signed-in device shares it.
LINE_MINOR = 0x2
# HTB shares what the line has over its classes' rates by their quantum: the
# same for every device, so devices share equally.
QUANTUM = 1514
UNLIMITED = 100 * 10**9


@attrs.frozen
class ShapingPlan:
    lan: str
    uplink: str
    table: str
    # The line's capacity each way in bit/s (0: not shaped as a whole).
    line_down: int = 0
    line_up: int = 0

    @classmethod
    def from_config(cls, config: Config) -> ShapingPlan:
        assert config.shaping.uplink is not None
        return cls(
            config.portal.interface,
            config.shaping.uplink,
            f"{config.firewall.table}_shaping",
            config.shaping.uplink_rate_down,
            config.shaping.uplink_rate_up,
        )

    @property
    def shares_line(self) -> bool:
        """Whether every signed-in device gets a class (to share the line), rate or none."""
        return bool(self.line_down or self.line_up)

    def directions(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """(interface, line rate) for downloads, then uploads."""
        return ((self.lan, self.line_down), (self.uplink, self.line_up))


@attrs.frozen
class Shaped:
    """One shaped device: its class's minor number, and its rates in bit/s (0: that way unlimited)."""

    minor: int
    down: int
    up: int


def leaf_qdisc(leaf: str, ceil: int) -> str:
    """The leaf qdisc of a class that sends at most C{ceil} bit/s."""
    if leaf != "pfifo":
        return leaf
    least, most = FIFO_PACKETS
    return f"pfifo limit {max(least, min(most, int(ceil * FIFO_DELAY / (8 * 1514))))}"


def tree(plan: ShapingPlan, leaf: str, owned: Iterable[str]) -> list[str]:
    """
    tc batch lines: a fresh HTB root on both interfaces (the old one first,
    where it is ours).  Unclassified traffic (the portal's own answers,
    always-allowed devices) goes to 1:1, unshaped; with a line rate, the
    line's class 1:2 holds the devices' classes.
    """
    lines = [f"qdisc del dev {device} root" for device in owned]
    for device, line in plan.directions():
        lines += [
            f"qdisc replace dev {device} root handle 1: htb default 1",
            f"class replace dev {device} parent 1: classid 1:1 htb rate 100gbit quantum 60000",
            f"qdisc replace dev {device} parent 1:1 handle fffe: {leaf_qdisc(leaf, UNLIMITED)}",
        ]
        if line:
            lines.append(
                f"class replace dev {device} parent 1: classid 1:{LINE_MINOR:x} htb rate {line}bit ceil {line}bit"
            )
    return lines


def device_lines(plan: ShapingPlan, device: Shaped, leaf: str) -> list[str]:
    """
    tc batch lines that give a device its classes (made or changed in place).
    Under a line, a device is guaranteed a hundredth of it and may take up
    to its own rate (or the whole line), sharing the rest equally.
    """
    lines = []
    for (interface, line), rate in zip(plan.directions(), (device.down, device.up), strict=True):
        if line:
            ceil = min(rate, line) if rate else line
            guaranteed = min(ceil, max(LEAST_RATE, line // 100))
            parent, share = f"1:{LINE_MINOR:x}", f" quantum {QUANTUM}"
        else:
            ceil = guaranteed = rate or UNLIMITED  # unlimited that way: the class still exists, for the mark
            parent, share = "1:", ""
        lines += [
            f"class replace dev {interface} parent {parent} classid 1:{device.minor:x} htb "
            f"rate {guaranteed}bit ceil {ceil}bit{share}",
            f"qdisc replace dev {interface} parent 1:{device.minor:x} handle {device.minor:x}: "
            f"{leaf_qdisc(leaf, ceil)}",
        ]
    return lines


def removal_lines(plan: ShapingPlan, minor: int) -> list[str]:
    return [f"class del dev {interface} classid 1:{minor:x}" for interface in (plan.lan, plan.uplink)]


def _elements(devices: Mapping[str, Shaped]) -> tuple[str, str]:
    marks = ", ".join(f"{mac} : 0x{d.minor:x}" for mac, d in sorted(devices.items()))
    classes = ", ".join(f"0x{d.minor:x} : 1:{d.minor:x}" for _, d in sorted(devices.items()))
    return marks, classes


def classifier(plan: ShapingPlan, devices: Mapping[str, Shaped]) -> str:
    """The shaper's nft table, whole, with every shaped device (one transaction replaces it)."""
    marks, classes = _elements(devices)
    return "\n".join(
        [
            f"table inet {plan.table} {{}}",
            f"delete table inet {plan.table}",
            f"table inet {plan.table} {{",
            "\tmap device_class {",
            "\t\ttype ether_addr : mark",
            *([f"\t\telements = {{ {marks} }}"] if marks else []),
            "\t}",
            "\tmap mark_class {",
            "\t\ttype mark : classid",
            *([f"\t\telements = {{ {classes} }}"] if classes else []),
            "\t}",
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter + 10; policy accept;",
            f'\t\tiifname "{plan.lan}" ct mark set ether saddr map @device_class comment "a device marks its connections"',
            '\t\tct mark != 0 meta priority set ct mark map @mark_class comment "both ways in its class"',
            "\t}",
            "}",
            "",
        ]
    )


def add_device(plan: ShapingPlan, mac: str, minor: int) -> str:
    return (
        f"add element inet {plan.table} device_class {{ {mac} : 0x{minor:x} }}\n"
        f"add element inet {plan.table} mark_class {{ 0x{minor:x} : 1:{minor:x} }}\n"
    )


def remove_device(plan: ShapingPlan, mac: str, minor: int) -> str:
    # Added first, so that the delete holds whatever the kernel had.
    return add_device(plan, mac, minor) + (
        f"delete element inet {plan.table} device_class {{ {mac} }}\n"
        f"delete element inet {plan.table} mark_class {{ 0x{minor:x} }}\n"
    )


def roots(tc_json: bytes) -> str | None:
    """The root qdisc of C{tc -j qdisc show dev X}: C{"ours"}, C{"default"}, or its kind if it is someone else's."""
    for qdisc in json.loads(tc_json or b"[]"):
        if qdisc.get("root"):
            kind, handle = qdisc.get("kind"), qdisc.get("handle")
            if kind == "htb" and handle == "1:":
                return "ours"
            if kind in DEFAULT_ROOTS and handle in ("0:", None):
                return "default"
            return f"{kind} {handle}"
    return "default"


@implementer(IAuthorizationObserver, IRateObserver)
class Shaper(Service):
    """
    Follows the table: a session with a rate gets its classes and its MAC
    in the classifier; its end takes them away.  Changes go to tc and nft
    one batch at a time, through the non-blocking process runner; a failed
    one is logged and the whole tree is loaded again shortly (the table wins).
    """

    name = "shaping"

    def __init__(
        self, config: Config, table: AuthorizationTable, clock: IReactorTime, runner: IProcessRunner
    ) -> None:
        self._config = config
        self._table = table
        self._clock = clock
        self._runner = runner
        self.plan = ShapingPlan.from_config(config)
        self._tc = str(config.shaping.tc)
        self._nft = str(config.firewall.nft)
        self._on_stop = config.firewall.on_stop
        self.devices: dict[str, Shaped] = {}
        self.leaf: str | None = None
        self._ready = False
        self._busy = False
        self._queue: list[tuple[list[str], str]] = []
        self._retry: object | None = None
        self.failures = 0

    @property
    def settled(self) -> bool:
        """Whether the kernel has everything the table asked for (the tree loaded, no change waiting)."""
        return self._ready and not self._busy and not self._queue

    def reconfigure(self, config: Config) -> None:
        """A reload's rates, for sessions that start afterwards."""
        self._config = config

    # --- the table ---

    def rates_of(self, session: Session) -> tuple[int, int]:
        """(down, up) bit/s a session is shaped to (0 unlimited): its own rates, else its way in's."""
        down, up = self._config.rates_for(session.method)
        return (
            session.rate_down if session.rate_down is not None else down,
            session.rate_up if session.rate_up is not None else up,
        )

    def _wanted(self, session: Session) -> Shaped | None:
        down, up = self.rates_of(session)
        if not down and not up and not self.plan.shares_line:
            return None
        known = self.devices.get(session.mac)
        return Shaped(known.minor if known is not None else self._free_minor(), down, up)

    def _free_minor(self) -> int:
        used = {device.minor for device in self.devices.values()}
        for minor in range(FIRST_MINOR, LAST_MINOR + 1):
            if minor not in used:
                return minor
        raise RuntimeError("no free class for another shaped device")

    def session_started(self, session: Session) -> None:
        wanted = self._wanted(session)
        known = self.devices.get(session.mac)
        if wanted is None:
            if known is not None:
                self.session_ended(session, EndReason.LOGOUT)
            return
        self.devices[session.mac] = wanted
        if self._ready and self.leaf is not None:
            added = add_device(self.plan, session.mac, wanted.minor) if known is None else ""
            self._submit(device_lines(self.plan, wanted, self.leaf), added)

    def session_extended(self, session: Session) -> None:
        pass

    def rates_changed(self, session: Session) -> None:
        """portald-ctl rate: the device's classes changed in place, nobody else's touched."""
        self.session_started(session)

    def session_ended(self, session: Session, reason: EndReason) -> None:
        known = self.devices.pop(session.mac, None)
        if known is not None and self._ready:
            self._submit(
                removal_lines(self.plan, known.minor), remove_device(self.plan, session.mac, known.minor)
            )

    # --- the kernel ---

    def startService(self) -> None:
        super().startService()
        for session in self._table.sessions():
            wanted = self._wanted(session)
            if wanted is not None:
                self.devices[session.mac] = wanted
        self._load()

    @defer.inlineCallbacks
    def _load(self):  # type: ignore[no-untyped-def]
        """Build the whole tree and classifier from the table (at start, and after a failure)."""
        self._ready = False
        owned = []
        for device in (self.plan.lan, self.plan.uplink):
            shown: ProcessResult = yield self._runner.run(self._tc, ["-j", "qdisc", "show", "dev", device])
            if not shown.succeeded:
                log.error(
                    "shaping off: cannot read {device}'s qdiscs: {why}", device=device, why=shown.message()
                )
                return
            root = roots(shown.stdout)
            if root == "ours":
                owned.append(device)
            elif root != "default":
                log.error(
                    "shaping off: {device} has a root qdisc portald did not make ({root}); "
                    "remove it, or set no rates",
                    device=device,
                    root=root,
                )
                return
        for leaf in LEAVES:
            lines = tree(self.plan, leaf, owned)
            for device in self.devices.values():
                lines += device_lines(self.plan, device, leaf)
            done: ProcessResult = yield self._runner.run(
                self._tc, ["-batch", "-"], ("\n".join(lines) + "\n").encode()
            )
            if done.succeeded:
                self.leaf = leaf
                break
            # What the failed attempt made is ours: taken down before the next.
            cleanup = "".join(
                f"qdisc del dev {device} root\n" for device in (self.plan.lan, self.plan.uplink)
            )
            yield self._runner.run(self._tc, ["-force", "-batch", "-"], cleanup.encode())
            owned = []
            log.info(
                "shaping: {leaf} is not available here ({why})", leaf=leaf.split()[0], why=done.message()
            )
        else:
            log.error("shaping off: tc could not build the tree")
            return
        done = yield self._runner.run(self._nft, ["-f", "-"], classifier(self.plan, self.devices).encode())
        if not done.succeeded:
            log.error("shaping: the classifier did not load: {why}", why=done.message())
            self._later()
            return
        self._ready = True
        log.info(
            "shaping {count} device(s): downloads on {lan}, uploads on {uplink}, {leaf} in each class",
            count=len(self.devices),
            lan=self.plan.lan,
            uplink=self.plan.uplink,
            leaf=self.leaf.split()[0],
        )
        self._next()

    def _submit(self, tc_lines: list[str], nft_text: str) -> None:
        self._queue.append((tc_lines, nft_text))
        self._next()

    @defer.inlineCallbacks
    def _next(self):  # type: ignore[no-untyped-def]
        if self._busy or not self._queue or not self._ready:
            return
        self._busy = True
        # Everything waiting goes in one tc batch and one nft transaction, in
        # order: a burst of sign-ins costs two runs, not two per device.
        waiting, self._queue = self._queue, []
        tc_lines = [line for lines, _ in waiting for line in lines]
        nft_text = "".join(text for _, text in waiting)
        try:
            done = yield self._runner.run(self._tc, ["-batch", "-"], ("\n".join(tc_lines) + "\n").encode())
            if done.succeeded and nft_text:
                done = yield self._runner.run(self._nft, ["-f", "-"], nft_text.encode())
        finally:
            self._busy = False
        if not done.succeeded:
            self.failures += 1
            log.error("shaping change failed, loading the whole tree again: {why}", why=done.message())
            self._queue.clear()
            self._later()
            return
        self._next()

    def _later(self) -> None:
        if self._retry is None or not self._retry.active():  # type: ignore[attr-defined]
            self._retry = self._clock.callLater(RETRY_AFTER, self._load)

    def stopService(self):  # type: ignore[no-untyped-def]
        super().stopService()
        if self._retry is not None and self._retry.active():  # type: ignore[attr-defined]
            self._retry.cancel()  # type: ignore[attr-defined]
        if self._on_stop != "remove":
            return None
        log.info("removing the shaping tree and table (firewall.on_stop: remove)")
        lines = [f"qdisc del dev {device} root" for device in (self.plan.lan, self.plan.uplink)]
        d = self._runner.run(self._tc, ["-force", "-batch", "-"], ("\n".join(lines) + "\n").encode())
        d.addCallback(lambda _: self._runner.run(self._nft, ["delete", "table", "inet", self.plan.table]))
        return d
