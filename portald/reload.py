"""
Live reload (SIGHUP, ``portald-ctl reload``): the same file read again, and
what may change live changed, in place.

A file that does not load changes nothing and is logged with the same keyed
message as at start.  A change to a key that is not live is refused as a
whole, naming the keys: the running configuration stays, no session is
dropped, no listener closed, and nothing is half applied.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from portald.config import Config, ConfigError, load_config

log = Logger()

# What a reload changes while portald runs (a theme's edited templates are
# read again even when its directory stays).  Everything else (listen
# addresses and ports, the interface, the firewall's backend and table, the
# database, the control socket, the lease files, the bounds) needs a restart.
LIVE_KEYS = frozenset(
    {
        "portal.venue",
        "portal.terms",
        "portal.venue_info_url",
        "http.theme",
        "http.probes",
        "log.format",
        "dns.upstream",
        "dns.upstream_timeout",
        "dns.walled_garden",
        "auth.method",
        "auth.codes",
        "auth.timeout",
        "auth.methods",
        "vouchers.when_full",
        "vouchers.wifi",
        "sessions.timeout",
        "sessions.idle_timeout",
        "sessions.quota",
        "sessions.extendable",
        "sessions.warn_before",
        "firewall.allowed_macs",
        "firewall.walled_garden",
    }
)


class ReloadRefused(Exception):
    """The reload changed nothing; the message says why (a keyed config error, or restart-only keys)."""


def is_live(key: str) -> bool:
    """Whether C{key} (or the section it is in, such as vouchers.wifi) changes in place."""
    parts = key.split(".")
    return any(".".join(parts[:end]) in LIVE_KEYS for end in range(1, len(parts) + 1))


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted keys whose values differ between C{old} and C{new}."""
    return sorted(_differences(old, new, ""))


def _differences(old: Any, new: Any, prefix: str) -> Iterator[str]:
    for field in attrs.fields(type(old)):
        if "parse" not in field.metadata:
            continue  # not a key (the file's own path)
        key = f"{prefix}{field.name}"
        before, after = getattr(old, field.name), getattr(new, field.name)
        if attrs.has(type(before)) and "parse" in attrs.fields(type(before))[0].metadata:
            yield from _differences(before, after, key + ".")
        elif before != after:
            yield key


# What takes the new configuration, once it is accepted.
Applier = Callable[[Config], None]
# What looks at it first, beyond the file (a theme's templates, say): one
# that raises ConfigError refuses the reload before anything is applied.
Check = Callable[[Config], object]


class Reloader:
    """Reads C{path} again and hands an accepted configuration to each applier, in order."""

    def __init__(
        self, path: Path, running: Config, appliers: Sequence[Applier], checks: Sequence[Check] = ()
    ) -> None:
        self._path = path
        self.running = running
        self._appliers = appliers
        self._checks = checks

    def reload(self) -> list[str]:
        """
        Reload; returns the keys that changed.

        @raise ReloadRefused: nothing changed.
        """
        try:
            new = load_config(self._path)
            for check in self._checks:
                check(new)
        except ConfigError as e:
            log.error("reload refused, nothing changed: {error}", error=str(e))
            raise ReloadRefused(f"configuration error: {e}") from None
        changed = changed_keys(self.running, new)
        needs_restart = [key for key in changed if not is_live(key)]
        if needs_restart:
            message = f"{', '.join(needs_restart)}: cannot change without a restart (nothing was changed)"
            log.error("reload refused: {message}", message=message)
            raise ReloadRefused(message)
        for apply in self._appliers:
            apply(new)
        self.running = new
        log.info(
            "reloaded {path}: {changed}",
            path=str(self._path),
            changed=", ".join(changed) if changed else "nothing changed",
        )
        return changed


class ReloadOnHangup(Service):
    """SIGHUP reloads, as daemons do; the handler before portald's comes back at stop."""

    name = "reload"

    def __init__(self, reloader: Reloader, reactor: IReactorFromThreads) -> None:
        self.reloader = reloader
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _hangup(self, signum: int, frame: object) -> None:
        # Out of the signal handler, into the reactor's own turn.
        self._reactor.callFromThread(self._reload)

    def _reload(self) -> None:
        try:
            self.reloader.reload()
        except ReloadRefused:
            pass  # logged, with the reason
