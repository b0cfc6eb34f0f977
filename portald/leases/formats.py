"""
DHCP lease files: the three formats gateways write, read as pure functions.

Each parser takes a file's whole text and the current time (seconds since
the epoch) and returns a L{ParseResult}: the leases active at that time, the
problems found (with their line), and whether the text looked cut short (a
file caught while its server was writing it).  Parsers never raise on any
text: a malformed line or block is skipped and reported.

* dnsmasq: ``<expiry> <mac> <ip> <hostname> <client-id>`` lines; expiry 0 is
  infinite; a ``duid`` line starts the IPv6 leases of a dual-stack server.
* ISC dhcpd: ``lease <ip> { ... }`` blocks appended over time; the last block
  of an address wins; only ``binding state active`` counts.
* Kea memfile: ``lease4.csv`` with a header; rows appended over time, the last
  row of an address wins; declined and expired-reclaimed rows do not count.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import time
from collections.abc import Callable

import attrs

from portald.addresses import InvalidMAC, normalise_ip, normalise_mac

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable_hostname(name: str | None) -> str | None:
    """
    A client-chosen hostname made safe to log and show: control characters
    (a newline would forge a log line) become '?'.
    """
    if not name:
        return None
    return _CONTROL.sub("?", name)


def _utf8_from_escapes(name: str) -> str:
    """ISC dhcpd writes a name's non-ASCII bytes as escapes, one per byte."""
    try:
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


@attrs.frozen
class Lease:
    """One address handed to one device until C{expires} (None: never)."""

    ip: str
    mac: str
    hostname: str | None = attrs.field(converter=printable_hostname)
    expires: float | None

    def active(self, now: float) -> bool:
        return self.expires is None or self.expires > now


@attrs.frozen
class ParseProblem:
    """Something in a lease file that could not be used."""

    line: int
    message: str


@attrs.frozen
class ParseResult:
    """
    What a lease file says: the active leases, the problems, and whether the
    text ends mid-record (C{truncated}: a writer was caught half-way).
    """

    leases: tuple[Lease, ...]
    problems: tuple[ParseProblem, ...] = ()
    truncated: bool = False


def _ipv4(text: str) -> str:
    address = ipaddress.IPv4Address(text)
    return normalise_ip(str(address))


def _active(leases: dict[str, Lease], now: float) -> tuple[Lease, ...]:
    return tuple(lease for lease in leases.values() if lease.active(now))


# --- dnsmasq -------------------------------------------------------------------------


def parse_dnsmasq(text: str, now: float) -> ParseResult:
    """
    dnsmasq's lease file (``--dhcp-leasefile``): one lease per line, written
    whole by dnsmasq on every change (truncate and rewrite in place).
    """
    leases: dict[str, Lease] = {}
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    # A last line without its newline: dnsmasq was caught mid-write.
    truncated = lines[-1] != ""
    ipv6 = False
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "duid":
            # From here on, the leases of a dual-stack dnsmasq are IPv6.
            ipv6 = True
            continue
        if len(fields) < 4:
            problems.append(ParseProblem(number, f"expected 'expiry mac ip hostname client-id': {line!r}"))
            continue
        expiry_text, mac_text, ip_text, hostname = fields[:4]
        if ipv6 or ":" in ip_text:
            # IPv6 leases (IAID in the MAC's place) are not part of the IPv4 map.
            continue
        try:
            expiry = float(int(expiry_text))
            if expiry < 0:
                raise ValueError
        except (ValueError, OverflowError):
            problems.append(ParseProblem(number, f"bad expiry time {expiry_text!r}"))
            continue
        try:
            ip = _ipv4(ip_text)
        except ValueError:
            problems.append(ParseProblem(number, f"bad IPv4 address {ip_text!r}"))
            continue
        try:
            mac = normalise_mac(mac_text)
        except InvalidMAC:
            # dnsmasq writes "<type>-<address>" for non-Ethernet hardware.
            problems.append(ParseProblem(number, f"not an Ethernet MAC address: {mac_text!r}"))
            continue
        leases[ip] = Lease(ip, mac, None if hostname == "*" else hostname, None if expiry == 0 else expiry)
    return ParseResult(_active(leases, now), tuple(problems), truncated)


# --- ISC dhcpd -----------------------------------------------------------------------

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


class _Truncated(Exception):
    """The text ended inside a block or a string."""


def _tokens(text: str) -> tuple[list[str], bool]:
    """
    The tokens as plain strings (a leading quote marks a string), and whether
    the text ends inside a string (the tokens then stop before it).  Files of
    thousands of blocks are read on every change, so this path stays lean.
    """
    tokens = [token for token in _TOKEN.findall(text) if token[0] != "#"]
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
                    ip = _ipv4(address)
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
    return ParseResult(
        _active({ip: lease for ip, lease in latest.items() if lease}, now), reported, truncated
    )


# --- Kea -----------------------------------------------------------------------------

_KEA_REQUIRED = ("address", "hwaddr", "expire", "valid_lifetime")
# Lease states: 0 default (in use), 1 declined, 2 expired-reclaimed, and
# newer ones (3 released) that are not in use either.
_KEA_DEFAULT = 0
_KEA_INFINITE = 0xFFFFFFFF


def _kea_unescape(field: str) -> str:
    # Kea's CSV writer escapes commas (and only those) as "&#x2c".
    return field.replace("&#x2c", ",")


def parse_kea(text: str, now: float) -> ParseResult:
    """
    Kea's memfile ``lease4.csv``: a header naming the columns, then one row
    per lease change; the last row of an address wins.  A row with
    valid_lifetime 0 records a deleted (released) lease.
    """
    problems: list[ParseProblem] = []
    lines = text.split("\n")
    truncated = lines[-1] != ""
    if truncated:
        lines = lines[:-1]
    columns: dict[str, int] | None = None
    latest: dict[str, Lease | None] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split(",")
        if fields[0].strip() == "address":
            # A header: the file's first line, or that of the next file when
            # the watcher reads Kea's older files (lease4.csv.1, .2) first.
            columns = None
        if columns is None:
            names = [name.strip() for name in fields]
            missing = [name for name in _KEA_REQUIRED if name not in names]
            if missing:
                problems.append(
                    ParseProblem(number, f"not a Kea lease4.csv header (no {', '.join(missing)})")
                )
                return ParseResult((), tuple(problems), truncated)
            columns = {name: position for position, name in enumerate(names)}
            continue
        if len(fields) < len(columns):
            problems.append(ParseProblem(number, f"expected {len(columns)} columns, got {len(fields)}"))
            continue
        row = {name: _kea_unescape(fields[position]) for name, position in columns.items()}

        def field(name: str, row: dict[str, str] = row) -> str:
            return row.get(name, "")

        try:
            ip = _ipv4(field("address"))
            valid_lifetime = int(field("valid_lifetime"))
            expire = int(field("expire"))
            state = int(field("state") or 0)
            expires = None if valid_lifetime == _KEA_INFINITE else float(expire)
        except (ValueError, OverflowError) as e:
            problems.append(ParseProblem(number, f"bad field: {e}"))
            continue
        if valid_lifetime == 0 or state != _KEA_DEFAULT:
            latest[ip] = None
            continue
        try:
            mac = normalise_mac(field("hwaddr"))
        except InvalidMAC:
            problems.append(ParseProblem(number, f"lease {ip}: bad hwaddr {field('hwaddr')!r}"))
            latest[ip] = None
            continue
        latest[ip] = Lease(ip, mac, field("hostname") or None, expires)
    if columns is None and text.strip():
        problems.append(ParseProblem(1, "no header line"))
    return ParseResult(
        _active({ip: lease for ip, lease in latest.items() if lease}, now), tuple(problems), truncated
    )


PARSERS: dict[str, Callable[[str, float], ParseResult]] = {
    "dnsmasq": parse_dnsmasq,
    "isc-dhcpd": parse_isc_dhcpd,
    "kea": parse_kea,
}
