"""
The closed table: portald's rules with only the sessions it knows, loaded
before anything answers a guest.

Until portald's table is in the kernel, nothing restricts forwarding from
the LAN.  So the table goes in first: at boot from the session database by
``portald-firewall close`` (the unit's ExecStartPre), and by the daemon
itself, before its listeners open, when no table is there.  Its rules are
the daemon's own: signed-in guests (from the database) keep their access,
everyone else reaches only the portal, its DNS and DHCP.  When portald
stops or dies the table stays (``firewall.on_stop: keep``), closed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence

from portald.firewall import ruleset
from portald.table import Session

# subprocess.run's shape: argv, stdin bytes -> (exit status, stderr).
BlockingRunner = Callable[[Sequence[str], bytes], tuple[int, bytes]]


def run_blocking(argv: Sequence[str], stdin: bytes) -> tuple[int, bytes]:
    """Run C{argv} to completion (before any reactor runs: nothing else to do meanwhile)."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e).encode()
    return done.returncode, done.stderr


def closed_ruleset(
    plan: ruleset.FirewallPlan, sessions: Iterable[Session], now: float, allowed: Iterable[str] | None = None
) -> str:
    """The whole table with C{sessions} signed in and C{allowed} let in, and no one else."""
    clients = [
        ruleset.AuthorizedClient(session.mac, ruleset.parse_address(session.ip), session.remaining(now))
        for session in sessions
    ]
    return ruleset.ruleset(plan, clients, allowed=allowed)


class TableLoadFailed(Exception):
    """nft refused the table (its message says why)."""


def close_if_open(
    nft: str,
    plan: ruleset.FirewallPlan,
    sessions: Iterable[Session],
    now: float,
    run: BlockingRunner,
    allowed: Iterable[str] | None = None,
) -> bool:
    """
    Load the closed table unless portald's table is there already (it is
    then the one the last run left: closed, its counters intact).  Returns
    whether it loaded one.

    @raise TableLoadFailed: with nft's message.
    """
    status, _ = run([nft, "list", "table", "inet", plan.table], b"")
    if status == 0:
        return False
    status, stderr = run([nft, "-f", "-"], closed_ruleset(plan, sessions, now, allowed).encode())
    if status != 0:
        raise TableLoadFailed(stderr.decode(errors="replace").strip() or f"nft exited {status}")
    return True
