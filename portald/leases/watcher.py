"""
The lease watcher: keeps L{Neighbours} equal to what the DHCP servers' lease
files say, within a debounce interval of each change.

Kept apart from the parsers (L{portald.leases.formats}), which are pure functions of
text: this module is the part with a clock, files and inotify.

* Each lease file's *directory* is watched with inotify: a watch on the file
  itself would end when ISC dhcpd renames a new file over it, and Twisted's
  INotify drops every watch when one watched file is deleted.
* Events are debounced (a burst of writes is read once, when it ends, but
  never later than a few debounce intervals after it began); the whole file is
  re-read.
* A slow poll (inode, size, mtime) is the backstop, and the only mechanism
  where inotify is unavailable.  A missing file is not an error: it is read
  when it appears.
* A read that looks cut short (a line or block without its end, or an empty
  file where there were leases) is not believed until a second read, one
  debounce later, shows the same text: the last good snapshot stays meanwhile.
* A read with problems and no lease at all, where there were leases, is not
  believed either (garbage in the file): the old leases stay until they
  expire or the file reads cleanly.
* Kea's older files (C{lease4.csv.1}, C{.2}, C{.completed}) are read before
  the current one, as Kea reads them: its hourly cleanup leaves the current
  file with only a header.
* Leases leave the map when they expire, on a timer, without a file change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import Interface, implementer

from portald.addresses import InvalidMAC, normalise_ip, normalise_mac
from portald.config import LeaseSource
from portald.leases.formats import PARSERS, Lease, ParseProblem
from portald.neighbours import Neighbours

log = Logger()

# A burst of events delays the read by at most this many debounce intervals.
MAX_DEBOUNCE_INTERVALS = 10
PROC_NET_ARP = Path("/proc/net/arp")


@attrs.frozen
class WatchedFile:
    """One lease file and its format (a key of L{PARSERS})."""

    format: str
    path: Path


class IDirectoryNotifier(Interface):
    """Tells when something in a directory changed."""

    def watch(directory: FilePath, callback: Callable[[FilePath], None]) -> bool:
        """
        Call C{callback} with the path of each changed entry of C{directory}
        (the directory's own path when the watch itself ended).  Returns
        whether the watch is in place (the directory may not exist yet).
        """

    def watching(directory: FilePath) -> bool:
        """Whether C{directory} is watched now."""

    def stop() -> None:
        """Stop watching everything."""


@implementer(IDirectoryNotifier)
class INotifyNotifier:
    """
    L{IDirectoryNotifier} on Linux inotify, through twisted.internet.inotify.

    When a watched directory is deleted, Twisted's INotify closes itself and
    so drops every other watch too: the next L{watch} starts a fresh one and
    watches again every directory that still exists (the watcher's poll
    calls it for each directory not L{watching}).
    """

    def __init__(self, reactor: object) -> None:
        from twisted.internet import inotify

        self._reactor = reactor
        self._inotify_module = inotify
        self._mask = (
            inotify.IN_CREATE
            | inotify.IN_MODIFY
            | inotify.IN_CLOSE_WRITE
            | inotify.IN_MOVED_TO
            | inotify.IN_MOVED_FROM
            | inotify.IN_DELETE
            | inotify.IN_ATTRIB
            | inotify.IN_DELETE_SELF
            | inotify.IN_MOVE_SELF
        )
        self._callbacks: dict[FilePath, Callable[[FilePath], None]] = {}
        self._watched: set[FilePath] = set()
        self._inotify = self._start()

    def _start(self):
        notifier = self._inotify_module.INotify(self._reactor)
        notifier.startReading()
        self._closed = False
        self._watched.clear()
        return notifier

    def watch(self, directory: FilePath, callback: Callable[[FilePath], None]) -> bool:
        self._callbacks[directory] = callback
        if self._closed:
            self._inotify = self._start()
            for other in self._callbacks:
                if other != directory:
                    self._add(other)
        return self._add(directory)

    def _add(self, directory: FilePath) -> bool:
        inotify = self._inotify_module
        callback = self._callbacks[directory]

        def notified(_ignored: object, path: FilePath, mask: int) -> None:
            # INotify reports bytes paths; the watcher compares text.
            path = path.asTextMode()
            if path == directory and mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF):
                self._watched.discard(directory)
                if mask & inotify.IN_DELETE_SELF:
                    # Twisted closes the whole INotify right after this.
                    self._closed = True
                    self._watched.clear()
                else:
                    # Renamed away: the watch would follow the wrong directory.
                    try:
                        self._inotify.ignore(directory)
                    except KeyError:
                        pass
            try:
                callback(path)
            except Exception:
                log.failure("lease watcher failed on a change of {path}", path=path.path)

        try:
            self._inotify.watch(directory, mask=self._mask, callbacks=[notified])
        except inotify.INotifyError:
            return False
        self._watched.add(directory)
        return True

    def watching(self, directory: FilePath) -> bool:
        return directory in self._watched

    def stop(self) -> None:
        self._watched.clear()
        self._callbacks.clear()
        self._closed = True
        self._inotify.loseConnection()


def make_notifier(reactor: object) -> IDirectoryNotifier | None:
    """An inotify notifier, or None (polling only) where inotify is unavailable."""
    if not IReactorFDSet.providedBy(reactor):
        return None
    try:
        return INotifyNotifier(reactor)
    except Exception as e:  # no inotify on this platform or reactor
        log.warn("inotify unavailable ({error}); lease files are polled only", error=e)
        return None


def read_proc_net_arp(path: Path = PROC_NET_ARP) -> dict[str, str]:
    """The kernel's complete IPv4 neighbour entries: IP -> MAC."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return {}
    neighbours = {}
    for line in lines:
        fields = line.split()
        # IP address, HW type, Flags, HW address, Mask, Device; 0x2 = complete.
        if len(fields) < 6 or not int(fields[2], 16) & 0x2:
            continue
        try:
            mac = normalise_mac(fields[3])
            ip = normalise_ip(fields[0])
        except (InvalidMAC, ValueError):
            continue
        if mac != "00:00:00:00:00:00":
            neighbours[ip] = mac
    return neighbours


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def kea_earlier_files(path: Path) -> list[Path]:
    """
    The files that hold Kea's leases before C{path}, oldest first.  Kea's
    lease file cleanup (LFC, hourly by default) moves C{lease4.csv} to
    C{lease4.csv.2} and starts a new C{lease4.csv} with only its header, then
    compacts C{.1} and C{.2} into C{.completed}, which becomes the new C{.1}.
    Kea itself reads them in this order at start.
    """
    completed = path.with_name(path.name + ".completed")
    if completed.exists():
        return [completed]
    return [path.with_name(path.name + ".1"), path.with_name(path.name + ".2")]


_EARLIER_FILES: dict[str, Callable[[Path], list[Path]]] = {"kea": kea_earlier_files}


class _Source:
    """What the watcher knows about one lease file."""

    def __init__(self, watched: WatchedFile) -> None:
        self.watched = watched
        self.parse = PARSERS[watched.format]
        self.earlier_files = _EARLIER_FILES.get(watched.format, lambda path: [])
        self.unreadable_logged = False
        self.leases: tuple[Lease, ...] = ()
        self.signature: tuple[int, int, int] | None = None
        self.read_once = False
        self.missing_logged = False
        self.suspect_text: str | None = None
        self.problems: frozenset[_Problem] = frozenset()
        self.pending: IDelayedCall | None = None
        self.first_event: float | None = None


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
    ) -> None:
        self._sources = [_Source(watched) for watched in files]
        self._neighbours = neighbours
        self._clock = clock
        # Made at start, not here: building the service must not touch the reactor.
        self._make_notifier = notifier
        self._notifier: IDirectoryNotifier | None = None
        self._debounce = debounce
        self._poll_interval = poll_interval
        self._neighbour_fallback = neighbour_fallback
        self._read_neighbours = read_neighbours
        self._on_update = on_update
        self._published: dict[str, Lease] = {}
        self._expiry_call: IDelayedCall | None = None
        self._unwatchable: set[FilePath] = set()
        self._was_watched: set[FilePath] = set()
        self._poll = LoopingCall(self.poll)
        self._poll.clock = clock

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
                how="with inotify" if self._notifier else f"by polling every {self._poll_interval}s",
            )
        self._watch_directories()
        for source in self._sources:
            self._read(source)
        self._publish()
        self._poll.start(self._poll_interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._poll.running:
            self._poll.stop()
        for source in self._sources:
            if source.pending is not None and source.pending.active():
                source.pending.cancel()
            source.pending = None
        if self._expiry_call is not None and self._expiry_call.active():
            self._expiry_call.cancel()
        self._expiry_call = None
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None

    # --- what the watcher knows ---

    def leases(self) -> dict[str, Lease]:
        """The merged active leases, by IP, as last published."""
        return dict(self._published)

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
            if path.path in (str(source.watched.path), str(source.watched.path.parent)):
                self._schedule(source)

    def _schedule(self, source: _Source) -> None:
        now = self._clock.seconds()
        if source.pending is not None and source.pending.active():
            # Wait for the burst to end, but not for ever.
            assert source.first_event is not None
            if now - source.first_event < self._debounce * MAX_DEBOUNCE_INTERVALS:
                source.pending.reset(self._debounce)
            return
        source.first_event = now
        source.pending = self._clock.callLater(self._debounce, self._debounced, source)

    def _debounced(self, source: _Source) -> None:
        source.pending = None
        source.first_event = None
        if self._read(source):
            self._publish()

    def poll(self) -> None:
        """The backstop: re-read every file whose inode, size or mtime changed."""
        self._watch_directories()
        changed = False
        for source in self._sources:
            if source.pending is None and _signature(source.watched.path) != source.signature:
                changed = self._read(source) or changed
        if changed or self._neighbour_fallback:
            self._publish()

    # --- reading ---

    def _read(self, source: _Source) -> bool:
        """Read one file; return whether its snapshot changed."""
        path = source.watched.path
        signature = _signature(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            source.signature = None
            if not source.missing_logged:
                source.missing_logged = True
                log.info(
                    "{path} does not exist (yet); {what}",
                    path=str(path),
                    what="keeping its leases until they expire" if source.leases else "waiting for it",
                )
            return False
        except OSError as e:
            source.signature = None
            log.warn("cannot read {path}: {error}", path=str(path), error=e.strerror)
            return False
        source.missing_logged = False
        source.signature = signature
        earlier, files = self._earlier_text(source)
        text = earlier + data.decode("utf-8", errors="replace")
        files.append((path, text.count("\n", len(earlier)) + 1))
        try:
            result = source.parse(text, self._clock.seconds())
        except Exception:
            # The parsers never raise on any text (property-tested); should
            # one ever do, the last good snapshot stays and portald goes on.
            log.failure("cannot parse {path}; keeping its last good leases", path=str(path))
            return False
        suspect = result.truncated or (not text.strip() and bool(source.leases))
        if suspect and text != source.suspect_text:
            # Caught mid-write, most likely: keep the last good snapshot and
            # look again shortly; the same text twice is what the file says.
            source.suspect_text = text
            self._schedule(source)
            return False
        source.suspect_text = None
        self._log_problems(source, frozenset(_where(problem, files) for problem in result.problems))
        if result.problems and not result.leases and source.leases:
            # Nothing readable where there were leases: not believed.  The
            # old leases stay until they expire or the file reads cleanly.
            if not source.unreadable_logged:
                source.unreadable_logged = True
                log.warn(
                    "{path}: no lease could be read; keeping its last {count} good leases",
                    path=str(path),
                    count=len(source.leases),
                )
            return False
        source.unreadable_logged = False
        source.read_once = True
        if result.leases == source.leases:
            return False
        source.leases = result.leases
        return True

    @staticmethod
    def _earlier_text(source: _Source) -> tuple[str, list[tuple[Path, int]]]:
        """The text of the files read before the source's own, and each one's lines."""
        parts = []
        files = []
        for path in source.earlier_files(source.watched.path):
            try:
                text = path.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                continue  # absent between the server's renames: the usual case
            if text and not text.endswith("\n"):
                text += "\n"
            parts.append(text)
            files.append((path, text.count("\n")))
        return "".join(parts), files

    def _log_problems(self, source: _Source, problems: frozenset[_Problem]) -> None:
        # Each problem once, not on every re-read of an unchanged file.
        for path, line, message in sorted(problems - source.problems):
            log.warn("{path}, line {line}: {problem} (skipped)", path=path, line=line, problem=message)
        source.problems = problems

    # --- publishing ---

    def _merged(self, now: float) -> dict[str, Lease]:
        merged: dict[str, Lease] = {}
        for source in self._sources:
            for lease in source.leases:
                if not lease.active(now):
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
        if self._expiry_call is not None and self._expiry_call.active():
            self._expiry_call.cancel()
        self._expiry_call = None
        ends = [lease.expires for lease in leases if lease.expires is not None]
        if ends and self.running:
            self._expiry_call = self._clock.callLater(max(0.0, min(ends) - now), self._expired)

    def _expired(self) -> None:
        self._expiry_call = None
        self._publish()


# A problem as logged: (file, line in that file, message).
_Problem = tuple[str, int, str]


def _where(problem: ParseProblem, files: Sequence[tuple[Path, int]]) -> _Problem:
    """Which of the files read one after another C{problem}'s line is in, and its line there."""
    line = problem.line
    for path, lines in files[:-1]:
        if line <= lines:
            return (str(path), line, problem.message)
        line -= lines
    return (str(files[-1][0]), line, problem.message)


def _later(a: float | None, b: float | None) -> bool:
    if a is None:
        return b is not None
    return b is not None and a > b


def watched_files(sources: Iterable[LeaseSource]) -> list[WatchedFile]:
    """L{WatchedFile}s from the configuration's lease sources."""
    return [WatchedFile(source.format, Path(source.path)) for source in sources]
