"""
A stand-in for the operating system's processes: it records each helper
invocation and lets the test decide how and when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from zope.interface import implementer

from portald.firewall.process import IProcessRunner, ProcessResult


@attrs.define
class Invocation:
    executable: str
    args: tuple[str, ...]
    stdin: bytes
    result: Deferred[ProcessResult]

    @property
    def text(self) -> str:
        return self.stdin.decode()

    def finish(self, exit_code: int | None = 0, stdout: bytes = b"", stderr: bytes = b"") -> None:
        self.result.callback(ProcessResult(exit_code, stdout, stderr))


@implementer(IProcessRunner)
class FakeRunner:
    def __init__(self) -> None:
        self.invocations: list[Invocation] = []

    def run(self, executable: str, args: Sequence[str], stdin: bytes = b"") -> Deferred[ProcessResult]:
        invocation = Invocation(executable, tuple(args), stdin, Deferred())
        self.invocations.append(invocation)
        return invocation.result

    def running(self) -> list[Invocation]:
        return [i for i in self.invocations if not i.result.called]

    def only_running(self) -> Invocation:
        running = self.running()
        assert len(running) == 1, running
        return running[0]
