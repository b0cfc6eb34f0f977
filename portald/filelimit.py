"""portald's own open-file limit, raised to fit the connections it is configured to hold."""

from __future__ import annotations

import resource

from twisted.logger import Logger

from portald.config import Config

log = Logger()

# Beyond the guests' connections: listeners, the database, nft, lease files, logs.
_HEADROOM = 256


def files_needed(config: Config) -> int:
    """Descriptors for every connection the limits allow, and the daemon's own."""
    return config.http.max_connections + config.dns.max_tcp_connections + _HEADROOM


def raise_open_file_limit(needed: int) -> int:
    """
    Raise the soft RLIMIT_NOFILE towards C{needed} (never above the hard
    limit, which only root or systemd's LimitNOFILE can raise) and return the
    soft limit now in force.  Too low a limit is logged: past it, every new
    connection, a guest's or the firewall's own nft, fails.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        log.warn(
            "open-file limit {soft} is below the {needed} the connection limits need"
            " (raise LimitNOFILE, or lower http.max_connections)",
            soft=soft,
            needed=needed,
        )
    return soft
