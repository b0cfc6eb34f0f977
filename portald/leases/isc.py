"""
ISC dhcpd's ``dhcpd.leases``, read as a pure function of its text.

``lease <ip> { ... }`` blocks appended over time (a journal, until dhcpd
rewrites the file and renames it over the old one); the last block of an
address wins; only ``binding state active`` counts.
"""

from __future__ import annotations

import calendar
import re
import time

from portald.addresses import normalise_mac
from portald.leases.model import Journal, Lease, ParseProblem, ParseResult, lease_ip

# A token: a quoted string, a brace or semicolon, a word, a comment, or a
# lone quote (a string the text ends inside).  findall skips the whitespace.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|[^\s{};"#]+|#[^\n]*|"', re.DOTALL)
_ESCAPE = re.compile(r"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b"}


def _unescape(quoted: str) -> str:
    body = quoted[1:-1]
    if "\\" not in body:
        return body

    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape[0] in "01234567":
            return chr(int(escape, 8) & 0xFF)
        if escape[0] == "x" and len(escape) > 1:
            return chr(int(escape[1:], 16))
        return _SIMPLE_ESCAPES.get(escape, escape)

    return _ESCAPE.sub(replace, body)


def _utf8_from_escapes(name: str) -> str:
    """ISC dhcpd writes a name's non-ASCII bytes as escapes, one per byte."""
    try:
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


class _Truncated(Exception):
    """The text ended inside a block or a string."""


# Text tokenized at a time: one findall holds the interpreter for all of its
# text, so a whole 6 MB journal read in a thread would stall the reactor.
PIECE = 64 * 1024


def _pieces(text: str) -> list[str]:
    """C{text} cut after a block's closing line (C{"}\\n"} at a line's start), about L{PIECE} at a time."""
    pieces = []
    start = 0
    cut = start + PIECE
    while len(text) - start > PIECE:
        cut = text.find("\n}\n", cut)
        if cut < 0:
            break
        piece = text[start : cut + 3]
        if (piece.count('"') - piece.count('\\"')) % 2:
            # Inside a string that holds a line break (dhcpd escapes those; a hand-made file may not): further on.
            cut += 3
            continue
        pieces.append(piece)
        start = cut = cut + 3
        cut += PIECE
    pieces.append(text[start:])
    return pieces


def _tokens(text: str) -> tuple[list[str], bool]:
    """
    The tokens as plain strings (a leading quote marks a string), and whether
    the text ends inside a string (the tokens then stop before it).  Files of
    thousands of blocks are read on every change, so this path stays lean.
    """
    tokens = [token for piece in _pieces(text) for token in _TOKEN.findall(piece) if token[0] != "#"]
    if '"' in tokens:
        return tokens[: tokens.index('"')], True
    return tokens, False


def _token_lines(text: str) -> list[int]:
    """The line of each token of L{_tokens}; worked out only when there is a problem to report."""
    lines = []
    line = 1
    position = 0
    for match in _TOKEN.finditer(text):
        line += text.count("\n", position, match.start())
        position = match.start()
        if match.group()[0] != "#":
            lines.append(line)
    return lines


def _isc_time(words: list[str]) -> float | None:
    """``never``, ``epoch <seconds>`` or ``<weekday> YYYY/MM/DD HH:MM:SS`` (UTC)."""
    if words == ["never"]:
        return None
    if len(words) == 2 and words[0] == "epoch":
        return float(int(words[1]))
    if len(words) == 3 and words[0].isdigit():
        return float(calendar.timegm(time.strptime(f"{words[1]} {words[2]}", "%Y/%m/%d %H:%M:%S")))
    raise ValueError(f"not a time: {' '.join(words)!r}")


def _statements(tokens: list[str], start: int) -> tuple[list[list[str]], int]:
    """
    The statements of a block whose body starts at C{start}, up to its ``}``;
    nested blocks are skipped whole.  Returns them and the index after ``}``.
    """
    statements: list[list[str]] = []
    current: list[str] = []
    index = start
    end = len(tokens)
    while index < end:
        token = tokens[index]
        index += 1
        if token == ";":
            if current:
                statements.append(current)
            current = []
        elif token == "{":
            index = _skip_block(tokens, index)
            current = []
        elif token == "}":
            if current:
                statements.append(current)
            return statements, index
        else:
            current.append(token)
    raise _Truncated()


def _skip_block(tokens: list[str], index: int) -> int:
    depth = 1
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return index
    raise _Truncated()


def _isc_mac(text: str) -> str:
    # Be lenient about leading zeros ("2:0:0:0:0:1"), as some writers drop them.
    groups = text.split(":")
    if len(groups) == 6 and all(1 <= len(group) <= 2 for group in groups):
        text = ":".join(group.zfill(2) for group in groups)
    return normalise_mac(text)


def _isc_lease(ip: str, statements: list[list[str]]) -> tuple[Lease | None, str | None]:
    """A lease block's lease (None unless active), or a problem."""
    state = None
    ends: float | None = None
    has_end = False
    mac = None
    hostname = None
    for words in statements:
        first = words[0]
        if first == "binding" and len(words) == 3 and words[1] == "state":
            state = words[2]
        elif first == "ends":
            ends = _isc_time(words[1:])
            has_end = True
        elif first == "hardware" and len(words) == 3:
            if words[1] != "ethernet":
                return None, f"lease {ip}: not Ethernet hardware ({words[1]})"
            mac = _isc_mac(words[2])
        elif first == "client-hostname" and len(words) == 2 and words[1][0] == '"':
            hostname = _utf8_from_escapes(_unescape(words[1]))
    if state != "active":
        return None, None
    if mac is None:
        return None, f"lease {ip}: active, but no 'hardware ethernet'"
    if not has_end:
        return None, f"lease {ip}: active, but no 'ends'"
    return Lease(ip, mac, hostname or None, ends), None


def parse_isc_dhcpd(text: str, now: float) -> ParseResult:
    """
    ISC dhcpd's ``dhcpd.leases``: a journal of ``lease`` blocks (and other
    declarations, skipped); for each address the last block wins.
    """
    return read_isc_journal(text).result(now)


def isc_cut(text: str) -> int:
    """Where C{text} may be cut for reading on later: after its last block's closing line (0: nowhere)."""
    end = text.rfind("\n}\n")
    return end + 3 if end >= 0 else 0


def read_isc_journal(text: str, context: object = None) -> Journal:
    """What C{text} says, address by address; it reads on at top level, which needs no C{context}."""
    # (token index, message): lines are worked out at the end, if needed.
    problems: list[tuple[int, str]] = []
    tokens, open_string = _tokens(text)
    latest: dict[str, Lease | None] = {}
    index = 0
    # A string cut short: whatever came before it still counts.
    truncated = open_string
    try:
        while index < len(tokens):
            token = tokens[index]
            if token == "lease":
                header = tokens[index + 1 : index + 3]
                if len(header) < 2:
                    raise _Truncated()
                address, brace = header
                if brace != "{":
                    problems.append((index, "expected 'lease <address> {'"))
                    index += 1
                    continue
                start = index
                statements, index = _statements(tokens, index + 3)
                if ":" in address:
                    continue  # an IPv6 lease (dhcpd -6 shares the syntax)
                try:
                    ip = lease_ip(address)
                    lease, problem = _isc_lease(ip, statements)
                except (ValueError, OverflowError) as e:
                    problems.append((start, f"lease {address}: {e}"))
                    continue
                if problem:
                    problems.append((start, problem))
                # A later block of the same address replaces the earlier one,
                # also when it says the address is no longer active.
                latest[ip] = lease
            elif token == "{":
                index = _skip_block(tokens, index + 1)
            elif token == "}":
                problems.append((index, "unexpected '}'"))
                index += 1
            else:
                # Any other declaration: up to its ';' or through its block.
                while index < len(tokens) and tokens[index] not in (";", "{"):
                    index += 1
                if index >= len(tokens):
                    raise _Truncated()
                if tokens[index] == "{":
                    index = _skip_block(tokens, index + 1)
                else:
                    index += 1
    except _Truncated:
        truncated = True
        problems.append((len(tokens) - 1, "the file ends inside a declaration"))
    lines = _token_lines(text) if problems else []
    reported = tuple(ParseProblem(lines[i] if 0 <= i < len(lines) else 1, message) for i, message in problems)
    return Journal(latest, reported, truncated)
