"""
Which lease-file directories changed: L{IDirectoryNotifier}, on Linux inotify
(L{INotifyNotifier}), or none at all where inotify is unavailable
(L{make_notifier}): the watcher then polls only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import Interface, implementer

from portald.leases import LOG_NAMESPACE

if TYPE_CHECKING:
    from twisted.internet.inotify import INotify

log = Logger(namespace=LOG_NAMESPACE)


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

    def __init__(self, reactor: IReactorFDSet) -> None:
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

    def _start(self) -> INotify:
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


def make_notifier(reactor: IReactorFDSet) -> IDirectoryNotifier | None:
    """An inotify notifier, or None (polling only) where inotify is unavailable."""
    # Asked, not assumed: a reactor without file descriptors (a test's Clock,
    # a non-POSIX reactor) cannot carry inotify.
    if not IReactorFDSet.providedBy(reactor):
        return None
    try:
        return INotifyNotifier(reactor)
    except Exception as e:  # no inotify on this platform or reactor
        log.warn("inotify unavailable ({error}); lease files are polled only", error=e)
        return None
