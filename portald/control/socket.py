"""
The control socket: the control API on a UNIX socket, mode 0660, group
C{control.group}.  Only the staff's side reaches it: it has no network address.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

from twisted.application.internet import UNIXServer
from twisted.internet.interfaces import IReactorUNIX
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from portald.config import ControlSettings

log = Logger()

SOCKET_MODE = 0o660


class ControlSocketError(Exception):
    """The socket cannot be made as configured; the message names the key."""


def group_id(settings: ControlSettings) -> int | None:
    """The configured group's id (C{None}: portald's own group).

    @raise ControlSocketError: naming C{control.group} if there is no such group.
    """
    if settings.group is None:
        return None
    try:
        return grp.getgrnam(settings.group).gr_gid
    except KeyError:
        raise ControlSocketError(
            f"control.group: there is no group {settings.group!r} on this machine "
            "(create it, or leave the key out for portald's own group)"
        ) from None


class ControlSocketService(UNIXServer):
    """The API's web site on C{settings.socket}, opened at start and removed at stop."""

    name = "control"

    def __init__(self, settings: ControlSettings, api: Resource, reactor: IReactorUNIX) -> None:
        self._path = Path(settings.socket)
        self._gid = group_id(settings)
        # Checked now, before twistd starts anything: a socket that cannot be
        # made stops portald with the key to fix.
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ControlSocketError(
                f"control.socket: cannot create the directory {self._path.parent}: {e.strerror}"
            ) from None
        if not os.access(self._path.parent, os.W_OK):
            raise ControlSocketError(
                f"control.socket: {self._path.parent} is not writable by this user (uid {os.geteuid()}); "
                "choose another path, or fix the directory's owner (systemd: RuntimeDirectory=portald)"
            )
        if len(os.fsencode(self._path)) > 107:
            raise ControlSocketError(
                f"control.socket: {self._path} is too long for a UNIX socket (107 bytes at most)"
            )
        site = Site(api)
        # One line per call is the log's business elsewhere: no access log.
        site.log = lambda request: None  # type: ignore[method-assign]
        # wantPID: a lock beside the socket, so a stale socket left by a
        # killed portald is replaced and a running one is not.
        super().__init__(str(self._path), site, mode=SOCKET_MODE, wantPID=True, reactor=reactor)

    def startService(self) -> None:
        super().startService()
        # listenUNIX set the mode; the group is ours to set.
        if self._gid is not None:
            os.chown(self._path, -1, self._gid)
        log.info("control API on {path} (portald-ctl)", path=str(self._path))
