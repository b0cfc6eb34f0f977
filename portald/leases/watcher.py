"""
The lease watcher: keeps L{Neighbours} equal to what the DHCP servers' lease
files say, within a debounce interval of each change.

The parsers (L{portald.leases.formats}) are pure functions of text, and each
file's reads are judged by its L{LeaseSource}; this module is the service
that finds out when to read, merges the files and publishes.

* Each lease file's *directory* is watched with inotify
  (L{portald.leases.notifier}): a watch on the file itself would end when ISC
  dhcpd renames a new file over it, and Twisted's INotify drops every watch
  when one watched file is deleted.
* Events are debounced (a burst of writes is read once, when it ends, but
  never later than a few debounce intervals after it began); the whole file is
  re-read.
* A slow poll (inode, size, mtime) is the backstop, and the only mechanism
  where inotify is unavailable.  A missing file is not an error: it is read
  when it appears.
* What a read is believed (a file cut short, or garbage, keeps the last good
  leases): see L{portald.leases.source}.
* Kea's older files (C{lease4.csv.1}, C{.2}, C{.completed}) are read before
  the current one, as Kea reads them: its hourly cleanup leaves the current
  file with only a header.
* Leases leave the map when they expire, on a timer, without a file change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from portald.config import LeaseSource as ConfiguredSource
from portald.leases import LOG_NAMESPACE
from portald.leases.arp import read_proc_net_arp
from portald.leases.model import Lease
from portald.leases.notifier import IDirectoryNotifier, make_notifier
from portald.leases.source import LeaseSource, WatchedFile
from portald.leases.timers import PendingCall
from portald.neighbours import Neighbours
from portald.periodic import Periodic
from portald.threads import in_thread_pool

# make_notifier and watched_files: what portald.tap builds the watcher with.
__all__ = ["LeaseWatcher", "WatchedFile", "make_notifier", "watched_files"]

log = Logger(namespace=LOG_NAMESPACE)


class LeaseWatcher(Service):
    """
    Keeps C{neighbours} equal to the merged active leases of C{files} (plus,
    optionally, the kernel's neighbour table for IPs no lease explains).
    """

    name = "leases"

    def __init__(
        self,
        files: Sequence[WatchedFile],
        neighbours: Neighbours,
        clock: IReactorTime,
        *,
        notifier: Callable[[], IDirectoryNotifier | None] | None = None,
        debounce: float = 0.1,
        poll_interval: float = 5.0,
        neighbour_fallback: bool = False,
        read_neighbours: Callable[[], Mapping[str, str]] = read_proc_net_arp,
        on_update: Callable[[Mapping[str, Lease]], None] | None = None,
        offload: IReactorThreads | None = None,
    ) -> None:
        # With a reactor to offload to, files are read and parsed in its thread
        # pool after a change (a 5000-lease file took up to a second to parse).
        to_thread = in_thread_pool(offload) if offload is not None else None
        self._sources = [
            LeaseSource(watched, clock, debounce=debounce, on_change=self._publish, offload=to_thread)
            for watched in files
        ]
        self._neighbours = neighbours
        self._clock = clock
        # Made at start, not here: building the service must not touch the reactor.
        self._make_notifier = notifier
        self._notifier: IDirectoryNotifier | None = None
        self._neighbour_fallback = neighbour_fallback
        self._read_neighbours = read_neighbours
        self._on_update = on_update
        self._published: dict[str, Lease] = {}
        # When the next lease expires: the map is published again then.
        self._expiry = PendingCall(clock, self._publish)
        self._unwatchable: set[FilePath] = set()
        self._was_watched: set[FilePath] = set()
        self._poll = Periodic(clock, poll_interval, self.poll)

    # --- service ---

    def startService(self) -> None:
        super().startService()
        if self._make_notifier is not None:
            self._notifier = self._make_notifier()
        for source in self._sources:
            log.info(
                "watching {path} ({lease_format}) {how}",
                path=str(source.watched.path),
                lease_format=source.watched.format,
                how="with inotify" if self._notifier else f"by polling every {self._poll.interval}s",
            )
        self._watch_directories()
        for source in self._sources:
            source.read()
        self._publish()
        self._poll.start()

    def stopService(self) -> None:
        super().stopService()
        self._poll.stop()
        for source in self._sources:
            source.stop()
        self._expiry.cancel()
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None

    # --- what the watcher knows ---

    def leases(self) -> dict[str, Lease]:
        """The merged active leases, by IP, as last published."""
        return dict(self._published)

    def health(self) -> list[dict[str, object]]:
        """Each lease file's state and last read."""
        return [source.health() for source in self._sources]

    # --- change detection ---

    def _watch_directories(self) -> None:
        if self._notifier is None:
            return
        for directory in sorted({FilePath(str(source.watched.path.parent)) for source in self._sources}):
            if self._notifier.watching(directory):
                continue
            if self._notifier.watch(directory, self.changed):
                if directory in self._unwatchable or directory in self._was_watched:
                    log.info("now watching {directory} with inotify", directory=directory.path)
                    # Whatever happened while it was not watched.
                    self.changed(directory)
                self._unwatchable.discard(directory)
                self._was_watched.add(directory)
            elif directory not in self._unwatchable:
                self._unwatchable.add(directory)
                log.info("cannot watch {directory} (yet); polling it", directory=directory.path)

    def changed(self, path: FilePath) -> None:
        """An entry of a watched directory changed: read the sources it concerns, debounced."""
        for source in self._sources:
            if source.concerns(path):
                source.changed()

    def poll(self) -> None:
        """The backstop: re-read every file whose inode, size or mtime changed."""
        self._watch_directories()
        changed = False
        for source in self._sources:
            if source.stale():
                changed = source.refresh() or changed
        if changed or self._neighbour_fallback:
            self._publish()

    # --- publishing ---

    def _merged(self, now: float) -> dict[str, Lease]:
        merged: dict[str, Lease] = {}
        for source in self._sources:
            for lease in source.leases:
                # Lease.active, inlined: this runs for every lease on every change.
                if lease.expires is not None and lease.expires <= now:
                    continue
                other = merged.get(lease.ip)
                # Two servers claim one IP: the lease that lasts longer wins.
                if other is None or _later(lease.expires, other.expires):
                    merged[lease.ip] = lease
        if self._neighbour_fallback:
            for ip, mac in self._read_neighbours().items():
                if ip not in merged:
                    merged[ip] = Lease(ip, mac, None, None)
        return merged

    def _publish(self) -> None:
        now = self._clock.seconds()
        merged = self._merged(now)
        self._log_changes(self._published, merged, now)
        if merged != self._published:
            self._published = merged
            self._neighbours.replace({ip: lease.mac for ip, lease in merged.items()})
            if self._on_update is not None:
                try:
                    self._on_update(dict(merged))
                except Exception:
                    # The map is already replaced: a listener's bug costs only its update.
                    log.failure("a lease update listener failed")
        self._schedule_expiry(merged.values(), now)

    def _log_changes(self, old: Mapping[str, Lease], new: Mapping[str, Lease], now: float) -> None:
        for ip, lease in new.items():
            previous = old.get(ip)
            if previous is lease:
                continue  # the same lease as read before (the parsers keep them)
            if previous is None or previous.mac != lease.mac or previous.hostname != lease.hostname:
                log.info(
                    "lease {ip} -> {mac}{name}",
                    ip=ip,
                    mac=lease.mac,
                    hostname=lease.hostname,
                    name=f" ({lease.hostname})" if lease.hostname else "",
                    previous_mac=previous.mac if previous else None,
                )
        for ip, lease in old.items():
            if ip in new:
                continue
            if not lease.active(now):
                log.info("lease expired {ip} -> {mac}", ip=ip, mac=lease.mac)
            else:
                log.info("lease ended {ip} -> {mac} (released or removed)", ip=ip, mac=lease.mac)

    def _schedule_expiry(self, leases: Iterable[Lease], now: float) -> None:
        self._expiry.cancel()
        ends = [lease.expires for lease in leases if lease.expires is not None]
        if ends and self.running:
            self._expiry.after(max(0.0, min(ends) - now))


def _later(a: float | None, b: float | None) -> bool:
    if a is None:
        return b is not None
    return b is not None and a > b


def watched_files(sources: Iterable[ConfiguredSource]) -> list[WatchedFile]:
    """L{WatchedFile}s from the configuration's lease sources."""
    return [WatchedFile(source.format, Path(source.path)) for source in sources]
