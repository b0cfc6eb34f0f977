"""
``log.format: json``: one JSON object per line (twisted.logger's own
format), where twistd would have written text, so that the events can be
shipped and counted (``jq``).

twistd takes a custom observer only as the dotted name of a factory
(C{--logger}), which it calls without arguments once it starts logging; so
the plugin's options say here, first, where twistd's text would have gone.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import ILogObserver, jsonFileLogObserver
from twisted.python.logfile import LogFile

# What twistd's --logger is set to for log.format: json.
FACTORY_NAME = "portald.logs.json_observer"

# (--logfile, --nodaemon) as twistd was given them.
_destination: tuple[str | None, bool] = (None, True)


def send_json_where_twistd_writes(logfile: str | None, nodaemon: bool) -> str:
    """Remember twistd's log destination; returns the name to give C{--logger}."""
    global _destination
    _destination = (logfile, nodaemon)
    return FACTORY_NAME


def json_observer() -> ILogObserver:
    """
    The JSON observer on the file twistd's text would go to: standard output
    in the foreground unless C{--logfile} names a file, C{twistd.log} in the
    background.
    """
    logfile, nodaemon = _destination
    out: IO[str]
    if logfile == "-" or (nodaemon and not logfile):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(logfile or "twistd.log")  # type: ignore[assignment]
    # An empty record separator: one object per line, as jq reads them.
    return jsonFileLogObserver(out, recordSeparator="")
