"""
Where portald's log goes, and in which format (``log.format``): twistd's
text, or one JSON object per line (twisted.logger's own format) so that the
events can be shipped and counted (``jq``).  The format changes on a reload.

twistd takes a custom observer only as the dotted name of a factory
(C{--logger}), which it calls without arguments once it starts logging; so
the plugin's options say here, first, where twistd's text would have gone
and in which format, and the factory writes there.  With C{--logger} or
C{--syslog} given by hand, twistd's choice stands and the format is not
portald's to change.
"""

from __future__ import annotations

import signal
import sys
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, jsonFileLogObserver, textFileLogObserver
from twisted.python.logfile import LogFile
from zope.interface import implementer

# What twistd's --logger is set to.
FACTORY_NAME = "portald.logs.observer"


@implementer(ILogObserver)
class FormatSwitch:
    """Text or JSON lines to one file; L{format} may change while it runs."""

    def __init__(self, out: IO[str], format: str) -> None:
        # An empty record separator: one object per line, as jq reads them.
        self._observers = {
            "text": textFileLogObserver(out),
            "json": jsonFileLogObserver(out, recordSeparator=""),
        }
        self.format = format

    def __call__(self, event: LogEvent) -> None:
        self._observers[self.format](event)


# (--logfile, --nodaemon, log.format) as twistd and the file gave them.
_destination: tuple[str | None, bool, str] = (None, True, "text")
# The observer the factory made, once twistd has called it.
_installed: FormatSwitch | None = None


def write_where_twistd_writes(logfile: str | None, nodaemon: bool, format: str) -> str:
    """Remember twistd's log destination and the format; returns the name to give C{--logger}."""
    global _destination
    _destination = (logfile, nodaemon, format)
    return FACTORY_NAME


def observer() -> ILogObserver:
    """
    The observer on the file twistd's text would go to: standard output in
    the foreground unless C{--logfile} names a file, C{twistd.log} in the
    background (where SIGUSR1 rotates it, as twistd's own would).
    """
    global _installed
    logfile, nodaemon, format = _destination
    out: Any
    if logfile == "-" or (nodaemon and not logfile):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(logfile or "twistd.log")
        if not signal.getsignal(signal.SIGUSR1):
            signal.signal(signal.SIGUSR1, lambda signum, frame: _rotate_soon(out))
    _installed = FormatSwitch(out, format)
    return _installed


def _rotate_soon(logfile: LogFile) -> None:
    # Out of the signal handler, into the reactor's turn (twistd's own way;
    # the factory is given no reactor).
    from twisted.internet import reactor

    reactor.callFromThread(logfile.rotate)  # type: ignore[attr-defined]


def set_format(format: str) -> bool:
    """A reload's C{log.format}; C{False} if twistd's own observer writes (C{--logger}, C{--syslog})."""
    if _installed is None:
        return False
    _installed.format = format
    return True
