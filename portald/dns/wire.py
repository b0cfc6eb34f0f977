"""
The DNS wire format for the fast path: parse the common query and build its
answer directly from bytes, without twisted.names' object model.

Only the common case is handled here: one question, class IN, no answer or
authority records, at most one additional record which must be a version-0
EDNS OPT.  Anything else returns C{None} and goes down the full
twisted.names path in L{portald.dns.server}, which is the reference: the property
tests check that both paths give the same answers.
"""

from __future__ import annotations

import struct
from typing import Any

HEADER = struct.Struct("!HHHHHH")
ANSWER_HEADER = struct.Struct("!HHHHH")  # the header after the ID
FLAGS = struct.Struct("!H")  # the header's second field
QUESTION_TAIL = struct.Struct("!HH")
OPT_FIXED = struct.Struct("!HHIH")  # type, class (= UDP size), TTL (= extended flags), RDLENGTH

TYPE_A = 1
TYPE_AAAA = 28
TYPE_OPT = 41
CLASS_IN = 1

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

# The UDP payload size portald advertises and honours (the 2020 DNS flag
# day's value: no IP fragmentation on any common path).
EDNS_UDP_SIZE = 1232
# Without EDNS a UDP answer may not exceed this (RFC 1035 4.2.1).
CLASSIC_UDP_SIZE = 512


def udp_limit(edns_size: int | None) -> int:
    """The largest UDP answer a client that advertised C{edns_size} gets."""
    if edns_size is None:
        return CLASSIC_UDP_SIZE
    return max(CLASSIC_UDP_SIZE, min(edns_size, EDNS_UDP_SIZE))


# EDNS flags (the low half of the OPT's TTL): DO, "DNSSEC answer OK".
EDNS_FLAG_DO = 0x8000


def opt_record(udp_size: int = EDNS_UDP_SIZE, flags: int = 0) -> bytes:
    """portald's own OPT record: version 0, no options, C{flags} (DO or nothing)."""
    return b"\x00" + OPT_FIXED.pack(TYPE_OPT, udp_size, flags, 0)


OUR_OPT = opt_record()
# RFC 3225: the DO bit of a query is copied into its response.
OUR_OPT_DO = opt_record(flags=EDNS_FLAG_DO)


class SimpleQuery:
    """
    A query of the common shape, as found on the wire, without its ID (so
    that one parse serves every later query with the same bytes after it).

    C{question} is the question section exactly as the client sent it (so an
    answer echoes the client's spelling, 0x20 case randomisation included);
    C{name} is the question name, lower-cased, labels joined by dots, the
    same spelling twisted.names gives a L{Name}.  C{redirect} and
    C{forwarded} are left for the fast path to keep this query's last
    answers in.  (A slotted class
    rather than a frozen attrs one: it is made on the fast path.)
    """

    __slots__ = ("flags", "question", "name", "qtype", "edns_size", "opt", "redirect", "forwarded")

    def __init__(
        self,
        flags: int,
        question: bytes,
        name: bytes,
        qtype: int,
        edns_size: int | None,
        opt: bytes = OUR_OPT,
    ) -> None:
        self.flags = flags
        self.question = question
        self.name = name
        self.qtype = qtype
        self.edns_size = edns_size
        # The OPT the answer carries, when the query had one.
        self.opt = opt
        self.redirect: bytes | None = None
        # (cache entry, seconds since stored, answer) of its last forwarded answer.
        self.forwarded: tuple[Any, int, bytes] | None = None

    def __repr__(self) -> str:
        return f"SimpleQuery(name={self.name!r}, qtype={self.qtype}, edns_size={self.edns_size})"

    @property
    def key(self) -> tuple[bytes, int, int]:
        return (self.name, self.qtype, CLASS_IN)


def parse_simple_query(data: bytes) -> SimpleQuery | None:
    """
    Parse C{data} if it is a query of the common shape, else return C{None}.
    Never raises on any input.
    """
    size = len(data)
    if size < 17:
        return None
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    # A query (QR=0), opcode QUERY, TC clear; one question and nothing else
    # but an optional OPT.
    if flags & (FLAG_QR | OPCODE_MASK | FLAG_TC) or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    labels = []
    offset = 12
    length = data[12]
    while length:
        # Compression pointers (0xC0) and the reserved label types are not
        # expected in a question: the full path decides what they mean.
        if length > 63:
            return None
        start = offset + 1
        offset = start + length
        if offset >= size:
            return None
        label = data[start:offset]
        if b"." in label:
            return None  # a dot inside a label: the name is not its dotted text
        labels.append(label)
        length = data[offset]
    offset += 1
    if offset > 267 or offset + 4 > size:  # a name of at most 255 bytes
        return None
    qtype, qclass = QUESTION_TAIL.unpack_from(data, offset)
    offset += 4
    if qclass != CLASS_IN:
        return None
    question = data[12:offset]
    edns_size = None
    opt = OUR_OPT
    if arcount:
        # The OPT: root name, type 41, version 0, options that fit exactly.
        if offset + 11 > size or data[offset] != 0:
            return None
        rtype, edns_size, extended, rdlength = OPT_FIXED.unpack_from(data, offset + 1)
        if rtype != TYPE_OPT or extended & 0xFFFF0000:
            return None
        if extended & EDNS_FLAG_DO:
            opt = OUR_OPT_DO
        offset += 11
        if not _options_fit(data, offset, rdlength):
            return None
        offset += rdlength
    if offset != size:
        return None
    return SimpleQuery(flags, question, b".".join(labels).lower(), qtype, edns_size, opt)


def first_name_has_dotted_label(data: bytes) -> bool:
    """
    Whether the first question's name has a label with a '.' in it, which
    no dotted text (twisted.names' nor the cache's) can carry faithfully.
    """
    offset = 12
    while offset < len(data):
        length = data[offset]
        if length == 0 or length > 63:  # the end, or a pointer: not in a question
            return False
        if b"." in data[offset + 1 : offset + 1 + length]:
            return True
        offset += 1 + length
    return False


def _options_fit(data: bytes, offset: int, rdlength: int) -> bool:
    """Whether the EDNS options in C{rdlength} bytes at C{offset} are well formed."""
    end = offset + rdlength
    if end > len(data):
        return False
    while offset < end:
        if offset + 4 > end:
            return False
        option_length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 4 + option_length
    return offset == end


# What a response copies from its query's flags.
_COPIED_FLAGS = OPCODE_MASK | FLAG_RD | FLAG_CD


def response_flags(query_flags: int, *, authoritative: bool, rcode: int) -> int:
    """
    A response's flags, on both paths: QR and RA set, the opcode, RD and CD
    copied from the query, AA for portald's own answers.
    """
    flags = FLAG_QR | FLAG_RA | (query_flags & _COPIED_FLAGS) | rcode
    if authoritative:
        flags |= FLAG_AA
    return flags


def with_flags(message: bytes, flags: int) -> bytes:
    """C{message} (a whole encoded DNS message) with its header's flags set to C{flags}."""
    return message[:2] + FLAGS.pack(flags) + message[4:]


def build_answer(query: SimpleQuery, flags: int, counts: tuple[int, int, int], body: bytes) -> bytes:
    """
    A response to C{query} without its first two bytes (the ID, which the
    caller puts back): the question echoed, then C{body} holding C{counts}
    (answer, authority, additional) records, then portald's OPT if the query
    had EDNS.
    """
    answers, authority, additional = counts
    if query.edns_size is not None:
        additional += 1
        body += query.opt
    return ANSWER_HEADER.pack(flags, 1, answers, authority, additional) + query.question + body


def address_record(rtype: int, ttl: int, packed_address: bytes) -> bytes:
    """An A or AAAA record for the question name (a pointer to offset 12)."""
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(packed_address)) + packed_address


def skip_name(data: bytes, offset: int) -> int:
    """
    The offset just past the (possibly compressed) name at C{offset}.

    @raise ValueError: if the name runs past the end of C{data}.
    """
    while True:
        if offset >= len(data):
            raise ValueError("name runs past the end")
        length = data[offset]
        if length >= 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length
