"""
portald's whole service tree, as ``twistd portald`` builds it, plus a test-only
control socket standing in for a login (the web portal is another part):

    python portald_with_control.py CONFIG SOCKET

Lines on the UNIX socket SOCKET:
    ``mac-for <ip>``          -> the MAC portald's Neighbours has for <ip>, or ``none``
    ``authorize <mac> <ip>``  -> ``ok`` once the table has the session
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineOnlyReceiver

from portald.config import load_config
from portald.tap import build_service


class Control(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, service) -> None:
        self.service = service

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words[:1] == ["mac-for"] and len(words) == 2:
            self.sendLine((self.service.neighbours.mac_for(words[1]) or "none").encode())
        elif words[:1] == ["authorize"] and len(words) == 3:
            self.service.table.authorize(words[1], ip=words[2], method="lab", duration=3600)
            self.sendLine(b"ok")
        else:
            self.sendLine(b"error: unknown command")


def main(config_path: str, socket_path: str) -> None:
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = build_service(load_config(config_path), reactor)
    service.privilegedStartService()
    service.startService()
    reactor.listenUNIX(socket_path, Factory.forProtocol(lambda: Control(service)))
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
