"""
One lease file as the watcher knows it: L{LeaseSource}, the file's last good
leases and when to read it next, around L{SourceState}, what its reads so far
have shown, as a value that only its transitions replace.

* A read that looks cut short (a line or block without its end, or an empty
  file where there were leases) is not believed until a second read, one
  debounce later, shows the same text: the last good leases stay meanwhile.
* A read with problems and no lease at all, where there were leases, is not
  believed either (garbage in the file): the old leases stay until they
  expire or the file reads cleanly.
* A missing file is not an error: it is read when it appears.
"""

from __future__ import annotations

import codecs
import enum
import os
from collections.abc import Callable
from pathlib import Path

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from portald.leases import LOG_NAMESPACE
from portald.leases.formats import EARLIER_FILES, Parser, no_earlier_files
from portald.leases.incremental import INCREMENTAL_PARSERS
from portald.leases.model import Lease, ParseProblem, ParseResult
from portald.leases.timers import Debounce
from portald.threads import Offload

log = Logger(namespace=LOG_NAMESPACE)

# A burst of events delays the read by at most this many debounce intervals.
MAX_DEBOUNCE_INTERVALS = 10

# What tells a file's versions apart without reading it: inode, size, mtime.
Signature = tuple[int, int, int]


@attrs.frozen
class WatchedFile:
    """One lease file and its format (a key of L{PARSERS})."""

    format: str
    path: Path


@attrs.frozen(order=True)
class FileProblem:
    """A parse problem as logged: the file it is in, its line in that file, what it is."""

    path: str
    line: int
    message: str


@attrs.frozen
class FileText:
    """
    A lease file as read: the text to parse (that of its server's earlier
    files first, if any), the files it came from with their number of lines
    (the file's own last), and the file's L{Signature} just before the read.
    """

    text: str
    files: tuple[tuple[Path, int], ...]
    signature: Signature | None

    def where(self, problem: ParseProblem) -> FileProblem:
        """Which of the files C{problem}'s line is in, and its line there."""
        line = problem.line
        for path, lines in self.files[:-1]:
            if line <= lines:
                return FileProblem(str(path), line, problem.message)
            line -= lines
        return FileProblem(str(self.files[-1][0]), line, problem.message)


def signature(path: Path) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


# Decoded at a time: one decode holds the interpreter lock for all of its
# bytes, and a 6 MB journal read in a thread would stall the reactor for it.
DECODE_PIECE = 256 * 1024


def decoded(data: bytes) -> str:
    """C{data} as UTF-8 (bad bytes replaced), decoded a piece at a time."""
    if len(data) <= DECODE_PIECE:
        return data.decode("utf-8", errors="replace")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    view = memoryview(data)
    parts = [
        decoder.decode(view[start : start + DECODE_PIECE]) for start in range(0, len(data), DECODE_PIECE)
    ]
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def read_file_text(watched: WatchedFile) -> FileText:
    """
    The file's text, after that of the files its server reads before it
    (L{EARLIER_FILES}).  Raises L{OSError} (L{FileNotFoundError}: absent) when
    the file itself cannot be read; earlier files that cannot be are left out.
    """
    path = watched.path
    before = signature(path)
    data = path.read_bytes()
    parts = []
    files = []
    for earlier in EARLIER_FILES.get(watched.format, no_earlier_files)(path):
        try:
            text = decoded(earlier.read_bytes())
        except OSError:
            continue  # absent between the server's renames: the usual case
        if text and not text.endswith("\n"):
            text += "\n"
        parts.append(text)
        files.append((earlier, text.count("\n")))
    earlier_text = "".join(parts)
    text = earlier_text + decoded(data)
    files.append((path, text.count("\n", len(earlier_text)) + 1))
    return FileText(text, tuple(files), before)


class Status(enum.Enum):
    """What the source believes of its file."""

    # Nothing read yet: no leases.
    NEVER_READ = "never read"
    # The last read that counted was believed: its leases are the source's.
    GOOD = "good"
    # The last read that counted had nothing usable where there were leases:
    # the last good ones stay (and that was said, once).
    KEEPING_LAST_GOOD = "keeping the last good leases"


@attrs.frozen
class SourceState:
    """
    What one lease file's reads have shown.  Each transition is a method that
    returns the next state; L{LeaseSource} logs what changed between the two.

    C{status} and C{leases} are what is believed; C{unconfirmed} (a text that
    looked cut short, seen once) and C{missing} (the file was absent at the
    last look) cut across it: a file may vanish, or be caught mid-write, in
    any status, and the status holds through.
    """

    status: Status = Status.NEVER_READ
    leases: tuple[Lease, ...] = ()
    # The file's signature at the last read, None if it could not be read:
    # the poll reads it again when this differs.
    signature: Signature | None = None
    unconfirmed: str | None = None
    missing: bool = False
    # The problems of the last read that counted, each logged once.
    problems: frozenset[FileProblem] = frozenset()

    def absent(self) -> SourceState:
        """The file does not exist."""
        return attrs.evolve(self, signature=None, missing=True)

    def unreadable(self) -> SourceState:
        """The file exists but cannot be read."""
        return attrs.evolve(self, signature=None)

    def read(self, signature: Signature | None) -> SourceState:
        """The file was read (its text is yet to be judged)."""
        return attrs.evolve(self, signature=signature, missing=False)

    def parsed(self, got: FileText, result: ParseResult) -> SourceState:
        """What the file's text, parsed into C{result}, makes of this state."""
        text = got.text
        suspect = result.truncated or (bool(self.leases) and not text.strip())
        if suspect and text != self.unconfirmed:
            # Caught mid-write, most likely: the same text twice is what the file says.
            return attrs.evolve(self, unconfirmed=text)
        problems = frozenset(got.where(problem) for problem in result.problems)
        if result.problems and not result.leases and self.leases:
            # Nothing readable where there were leases: not believed.
            return attrs.evolve(self, status=Status.KEEPING_LAST_GOOD, unconfirmed=None, problems=problems)
        return attrs.evolve(
            self, status=Status.GOOD, leases=result.leases, unconfirmed=None, problems=problems
        )


# A read's text (or why there was none) and its parse (or the exception it raised).
Outcome = tuple[FileText | OSError, ParseResult | BaseException | None]


def _load(
    watched: WatchedFile, read_text: Callable[[WatchedFile], FileText], parse: Parser, now: float
) -> Outcome:
    """Read and parse C{watched}, catching what either raises: pure, so it may run in a thread."""
    try:
        got = read_text(watched)
    except OSError as e:
        return e, None
    try:
        return got, parse(got.text, now)
    except Exception as e:
        return got, e


class LeaseSource:
    """
    One lease file: its L{SourceState}, and the debounced read that follows
    L{changed}.  C{on_change} is called when a debounced read changed the
    leases; L{read} says so to its caller instead.
    """

    def __init__(
        self,
        watched: WatchedFile,
        clock: IReactorTime,
        *,
        debounce: float,
        on_change: Callable[[], None],
        read_text: Callable[[WatchedFile], FileText] = read_file_text,
        offload: Offload | None = None,
    ) -> None:
        self.watched = watched
        # This file's own parser, which remembers its last read to read on
        # from it; an attribute, because tests put a failing parser here.
        self.parse: Parser = INCREMENTAL_PARSERS[watched.format]()
        self.state = SourceState()
        # When the file was last read whole (for portald-ctl status).
        self.last_read: float | None = None
        self._clock = clock
        self._on_change = on_change
        self._read_text = read_text
        self._debounce = Debounce(
            clock, debounce, self._debounced, patience=debounce * MAX_DEBOUNCE_INTERVALS
        )
        # Change events name the file, or the directory when its watch ended.
        self._paths = (str(watched.path), str(watched.path.parent))
        # Where a debounced read and parse run: off the reactor when given
        # (a thread), so that a big file never holds up DNS; judged on it.
        self._offload = offload
        self._reading = False
        self._again = False

    @property
    def leases(self) -> tuple[Lease, ...]:
        """The last good leases (expired ones included: the watcher drops those)."""
        return self.state.leases

    def health(self) -> dict[str, object]:
        """What an operator asks of this file: its state, its leases, its last read."""
        state = self.state
        return {
            "path": str(self.watched.path),
            "format": self.watched.format,
            "state": "missing" if state.missing else state.status.value,
            "leases": len(state.leases),
            "last_read": self.last_read,
        }

    def concerns(self, path: FilePath) -> bool:
        """Whether a change of C{path} may be a change of this file."""
        return path.path in self._paths

    def changed(self) -> None:
        """The file may have changed: read it once a burst of changes is over."""
        self._debounce.poke()

    def stale(self) -> bool:
        """Whether the poll should read the file: no read is due and its signature changed."""
        return not self._debounce.pending and signature(self.watched.path) != self.state.signature

    def stop(self) -> None:
        self._debounce.cancel()

    def _debounced(self) -> None:
        if self.refresh():
            self._on_change()

    def refresh(self) -> bool:
        """
        Read the file: on the reactor, returning whether its leases changed;
        or, with C{offload}, off it, calling C{on_change} later if they did
        (and returning False now).
        """
        if self._offload is None:
            return self.read()
        if self._reading:
            # One read at a time; the change that came meanwhile is read after it.
            self._again = True
            return False
        self._reading = True
        now = self._clock.seconds()
        watched, read_text, parse = self.watched, self._read_text, self.parse

        def judged(outcome: Outcome) -> None:
            self._reading = False
            if self._judge(*outcome):
                self._on_change()
            if self._again:
                self._again = False
                self.refresh()

        def failed(failure: Failure) -> None:
            self._reading = False
            log.failure("reading {path} off the reactor failed", failure, path=str(self.watched.path))

        # In the thread: only the pure parts, nothing of the source's state.
        self._offload(lambda: _load(watched, read_text, parse, now)).addCallbacks(judged, failed)
        return False

    def read(self) -> bool:
        """Read the file now, on the reactor; return whether its leases changed."""
        return self._judge(*_load(self.watched, self._read_text, self.parse, self._clock.seconds()))

    def _judge(self, got: FileText | OSError, result: ParseResult | BaseException | None) -> bool:
        """What a read (its text, or why there was none) and its parse make of the state; whether the leases changed."""
        path = self.watched.path
        before = self.state
        if isinstance(got, FileNotFoundError):
            self.state = before.absent()
            if not before.missing:
                log.info(
                    "{path} does not exist (yet); {what}",
                    path=str(path),
                    what="keeping its leases until they expire" if before.leases else "waiting for it",
                )
            return False
        if isinstance(got, OSError):
            self.state = before.unreadable()
            log.warn("cannot read {path}: {error}", path=str(path), error=got.strerror)
            return False
        self.state = fresh = before.read(got.signature)
        self.last_read = self._clock.seconds()
        if not isinstance(result, ParseResult):
            # The parsers never raise on any text (property-tested); should
            # one ever do, the last good snapshot stays and portald goes on.
            log.failure("cannot parse {path}; keeping its last good leases", Failure(result), path=str(path))
            return False
        self.state = after = fresh.parsed(got, result)
        if after.unconfirmed is not None:
            # Look again shortly.
            self._debounce.poke()
            return False
        # Each problem once, not on every re-read of an unchanged file.
        for problem in sorted(after.problems - fresh.problems):
            log.warn(
                "{path}, line {line}: {problem} (skipped)",
                path=problem.path,
                line=problem.line,
                problem=problem.message,
            )
        if after.status is Status.KEEPING_LAST_GOOD:
            if fresh.status is not Status.KEEPING_LAST_GOOD:
                log.warn(
                    "{path}: no lease could be read; keeping its last {count} good leases",
                    path=str(path),
                    count=len(after.leases),
                )
            return False
        return after.leases != fresh.leases
