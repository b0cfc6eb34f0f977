"""
``portald-firewall`` (or ``python -m portald.cli.firewall``): portald's
nftables table without the daemon.

    portald-firewall close --config /etc/portald/portald.yaml

``close`` puts the closed table in place, unless one is there already:
guests signed in according to the session database keep their access,
everyone else reaches only the portal, its DNS and DHCP.  The systemd unit
runs it before portald (ExecStartPre), so the network is never open while
portald starts or cannot.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from portald.cli import prog
from portald.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from portald.firewall.closing import TableLoadFailed, close_if_open, run_blocking
from portald.firewall.ruleset import FirewallPlan
from portald.store import SessionStore, StoreError
from portald.table import Session


def stored_state(database: Path, now: float) -> tuple[list[Session], list[str]]:
    """
    The sessions still live in the database, and the MACs staff let in
    (none if there is no database yet).
    """
    if not database.exists():
        return [], []
    # Read-only: the daemon's own start closes what expired meanwhile.
    store = SessionStore.open_read_only(database)
    try:
        return store.restorable(now), [device.mac for device in store.allowed_devices()]
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("portald.cli.firewall"), description="portald's nftables table without the daemon."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    close = commands.add_parser("close", help="Put the closed table in place (before portald starts).")
    close.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="portald's configuration file")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"portald-firewall: configuration error: {e}", file=sys.stderr)
        return 1
    if config.firewall.backend != "nftables":
        print(f"portald-firewall: firewall.backend is {config.firewall.backend}: no table to close")
        return 0
    plan = FirewallPlan.from_config(config)
    now = time.time()
    try:
        sessions, staff_allowed = stored_state(config.state.database, now)
    except (StoreError, sqlite3.Error) as e:
        # Closed all the same: nobody signed in is safer than everyone out.
        print(f"portald-firewall: {e}; closing with no one signed in", file=sys.stderr)
        sessions, staff_allowed = [], []
    allowed = [*config.firewall.allowed_macs, *staff_allowed]
    try:
        loaded = close_if_open(str(config.firewall.nft), plan, sessions, now, run_blocking, allowed)
    except TableLoadFailed as e:
        print(f"portald-firewall: nft refused the table: {e}", file=sys.stderr)
        return 1
    if loaded:
        print(f"portald-firewall: {plan.qualified_table} loaded closed, {len(sessions)} guest(s) signed in")
    else:
        print(f"portald-firewall: {plan.qualified_table} is in place already; left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
