"""
Reading a lease file again at the cost of what changed, not of its size.

A DHCP server changes one lease at a time, and the watcher reads the whole
file after each change: with 5000 leases, a full parse took 0.1 s (dnsmasq,
Kea) to 1.5 s (ISC dhcpd's 6 MB journal).  Each format's parser here gives
exactly what its pure parser (L{portald.leases.formats.PARSERS}) gives for
the same text, and remembers what it needs to do less next time:

* dnsmasq rewrites its whole file, but the lines of leases that did not
  change are the same: each line's outcome is remembered (L{LineMemoParser}).
* ISC dhcpd and Kea append to a journal until they rewrite it: what the text
  up to its last whole record said is remembered, with that text, and a
  text that starts with the same is read on from there
  (L{ResumingParser}).  Anything else (a rewrite, a shorter file, garbage
  before the cut) is read whole, as the pure parser would.

One parser belongs to one L{LeaseSource}, which never runs two reads at once;
each read replaces what is remembered as a whole, so even two at once would
only cost the memo, never the result.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from portald.leases.dnsmasq import LineOutcome, parse_dnsmasq_remembering
from portald.leases.isc import isc_cut, read_isc_journal
from portald.leases.kea import kea_cut, read_kea_journal
from portald.leases.model import Journal, ParseResult

# Reads a journal's text, given what the text before it left (its context).
JournalReader = Callable[[str, object], Journal]


class LineMemoParser:
    """dnsmasq's file, each of whose lines is parsed only the first time it is seen."""

    def __init__(self) -> None:
        self._memo: dict[str, LineOutcome] = {}

    def __call__(self, text: str, now: float) -> ParseResult:
        result, self._memo = parse_dnsmasq_remembering(text, now, self._memo)
        return result


@attrs.frozen
class Checkpoint:
    """What a journal's text up to a cut (C{text}, C{lines} lines) said."""

    # Kept whole: one comparison with the next read's start is a memcmp
    # (0.5 ms for 6 MB, where encoding it for a digest held the lock longer).
    text: str
    lines: int
    journal: Journal


_START = Checkpoint("", 0, Journal({}))


class ResumingParser:
    """
    A journal (ISC dhcpd's, Kea's) read on from the end of its last read's
    whole records when the text still starts with them.  C{cut} says where a
    text's whole records end.
    """

    def __init__(self, read_journal: JournalReader, cut: Callable[[str], int]) -> None:
        self._read_journal = read_journal
        self._cut = cut
        self._checkpoint = _START

    def __call__(self, text: str, now: float) -> ParseResult:
        checkpoint = self._checkpoint
        if not text.startswith(checkpoint.text):
            checkpoint = _START
        rest = text[len(checkpoint.text) :]
        cut = self._cut(rest)
        whole = self._read_journal(rest[:cut], checkpoint.journal.context)
        if cut and not whole.truncated and not whole.void:
            checkpoint = Checkpoint(
                # The text itself when it ends with a whole record, as a
                # server's appends do: no copy.
                text if cut == len(rest) else text[: len(checkpoint.text) + cut],
                checkpoint.lines + rest.count("\n", 0, cut),
                checkpoint.journal.then(whole, checkpoint.lines),
            )
            rest = rest[cut:]
        # Where the next read may go on from (the start, if nothing was whole).
        self._checkpoint = checkpoint
        return checkpoint.journal.then(
            self._read_journal(rest, checkpoint.journal.context), checkpoint.lines
        ).result(now)


# A parser for one source's reads, by format: what it remembers is its own.
INCREMENTAL_PARSERS: dict[str, Callable[[], Callable[[str, float], ParseResult]]] = {
    "dnsmasq": LineMemoParser,
    "isc-dhcpd": lambda: ResumingParser(read_isc_journal, isc_cut),
    "kea": lambda: ResumingParser(read_kea_journal, kea_cut),
}
