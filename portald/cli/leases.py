"""
``portald-leases`` (or ``python -m portald.cli.leases``): what portald reads from lease files.

    portald-leases dnsmasq /var/lib/misc/dnsmasq.leases
    portald-leases --follow isc-dhcpd /var/lib/dhcp/dhcpd.leases kea /var/lib/kea/kea-leases4.csv

Without ``--follow``: the active leases, once.  With it: the real
L{LeaseWatcher} (inotify, debounce, polling), printing the whole merged map
at start and on every change (``--json``: one JSON object per line), and its
log on stderr.  The lab tests run it this way, as an operator would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from portald.cli import prog
from portald.leases.formats import PARSERS
from portald.leases.model import Lease
from portald.leases.notifier import make_notifier
from portald.leases.source import WatchedFile
from portald.leases.watcher import LeaseWatcher
from portald.neighbours import Neighbours


def _expiry(lease: Lease) -> str:
    if lease.expires is None:
        return "never"
    return datetime.fromtimestamp(lease.expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_leases(leases: Mapping[str, Lease]) -> str:
    rows = [
        f"{lease.ip:<15} {lease.mac}  {lease.hostname or '-':<24} until {_expiry(lease)}"
        for lease in sorted(leases.values(), key=lambda lease: tuple(int(p) for p in lease.ip.split(".")))
    ]
    return "\n".join(rows) if rows else "(no active leases)"


def leases_json(leases: Mapping[str, Lease]) -> str:
    return json.dumps(
        {
            "time": time.time(),
            "leases": {
                ip: {"mac": lease.mac, "hostname": lease.hostname, "expires": lease.expires}
                for ip, lease in sorted(leases.items())
            },
        }
    )


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog("portald.cli.leases"),
        description="Show the active leases portald reads from lease files.",
    )
    parser.add_argument("--follow", action="store_true", help="keep watching; print the map on every change")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--debounce", type=float, default=0.1, help="seconds (default 0.1)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument(
        "--neighbour-fallback",
        action="store_true",
        help="also map IPs no lease explains from the kernel's neighbour table (/proc/net/arp)",
    )
    parser.add_argument("sources", nargs="+", metavar="FORMAT PATH", help=f"format: {', '.join(PARSERS)}")
    arguments = parser.parse_args(argv)
    pairs = arguments.sources
    if len(pairs) % 2:
        parser.error("give FORMAT PATH pairs")
    arguments.files = []
    for fmt, path in zip(pairs[::2], pairs[1::2], strict=True):
        if fmt not in PARSERS:
            parser.error(f"unknown format {fmt!r} (expected one of {', '.join(PARSERS)})")
        arguments.files.append(WatchedFile(fmt, Path(path)))
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(sys.argv[1:] if argv is None else argv)
    show = leases_json if arguments.json else format_leases

    def printed(leases: Mapping[str, Lease]) -> None:
        print(show(leases), flush=True)

    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # Once: only the problems (the table says the rest).  Following: everything.
    level = LogLevel.info if arguments.follow else LogLevel.warn
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=level)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    watcher = LeaseWatcher(
        arguments.files,
        Neighbours(),
        reactor,
        notifier=(lambda: make_notifier(reactor)) if arguments.follow else None,
        debounce=arguments.debounce,
        poll_interval=arguments.poll_interval,
        neighbour_fallback=arguments.neighbour_fallback,
        on_update=printed if arguments.follow else None,
    )
    watcher.startService()
    if not arguments.follow:
        printed(watcher.leases())
        watcher.stopService()
        return 0
    if not watcher.leases():
        printed({})
    reactor.addSystemEventTrigger("before", "shutdown", watcher.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
