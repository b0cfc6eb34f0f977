"""
Running helper programs (``nft``, ``conntrack``) without blocking the reactor.

L{IProcessRunner} is the seam the tests use: a fake runner records the
invocations and lets the test finish them with an exit status, standing in
for the operating system, not for portald's logic.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

# Helpers get this environment and no other: nothing of portald's own
# environment (locale, proxies) can change how they behave or what they print.
HELPER_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


@attrs.frozen
class ProcessResult:
    """How a helper ended: its exit status (C{None} if it never ran or was killed)."""

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    def message(self) -> str:
        """The helper's own words about what went wrong, on one line."""
        text = (
            self.stderr.decode("utf-8", "replace").strip() or self.stdout.decode("utf-8", "replace").strip()
        )
        text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        status = "did not run" if self.exit_code is None else f"exit status {self.exit_code}"
        return f"{status}: {text}" if text else status


class IProcessRunner(Interface):
    def run(executable: str, args: Sequence[str], stdin: bytes = b"") -> Deferred[ProcessResult]:
        """
        Run C{executable} (an absolute path) with C{args}, feed it C{stdin},
        and fire with how it ended.  Never errbacks: a program that cannot be
        started ends with C{exit_code=None} and the reason as C{stderr}.
        """


class _Collector(ProcessProtocol):
    def __init__(self, stdin: bytes, done: Deferred[ProcessResult]) -> None:
        self._stdin = stdin
        self._done = done
        self._stdout: list[bytes] = []
        self._stderr: list[bytes] = []
        self.timeout_call: IDelayedCall | None = None

    def connectionMade(self) -> None:
        if self._stdin:
            self.transport.write(self._stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._stdout.append(data)

    def errReceived(self, data: bytes) -> None:
        self._stderr.append(data)

    def kill(self) -> None:
        self.timeout_call = None
        self._stderr.append(b"killed: took too long")
        try:
            self.transport.signalProcess("KILL")
        except Exception:
            pass  # It ended just now; processEnded reports it.

    def processEnded(self, reason: Failure) -> None:
        if self.timeout_call is not None and self.timeout_call.active():
            self.timeout_call.cancel()
        code: int | None = None
        if reason.check(ProcessDone):
            code = 0
        elif reason.check(ProcessTerminated):
            code = reason.value.exitCode
        self._done.callback(ProcessResult(code, b"".join(self._stdout), b"".join(self._stderr)))


class IProcessReactor(IReactorProcess, IReactorTime):
    """What the runner needs of a reactor: to spawn processes, and a clock to kill hung ones."""


@implementer(IProcessRunner)
class SpawnedProcessRunner:
    """Runs helpers with C{reactor.spawnProcess}, killing any that hang."""

    def __init__(self, reactor: IProcessReactor, timeout: float = 30.0) -> None:
        self._reactor = reactor
        self._timeout = timeout

    def run(self, executable: str, args: Sequence[str], stdin: bytes = b"") -> Deferred[ProcessResult]:
        done: Deferred[ProcessResult] = Deferred()
        if not os.path.isabs(executable) or not os.access(executable, os.X_OK):
            done.callback(ProcessResult(None, stderr=f"{executable}: not an executable file".encode()))
            return done
        collector = _Collector(stdin, done)
        try:
            self._reactor.spawnProcess(
                collector, executable, [executable, *args], env=dict(HELPER_ENVIRONMENT), path="/"
            )
        except Exception as e:
            done.callback(ProcessResult(None, stderr=f"{executable}: {e}".encode()))
            return done
        collector.timeout_call = self._reactor.callLater(self._timeout, collector.kill)
        return done
