"""
A query as the full path reads it: strictly, with twisted.names, keeping
what the answer needs from the wire (the header's flags, the size).
"""

from __future__ import annotations

from io import BytesIO

import attrs
from twisted.names import dns

from portald.dns.edns import opt_records
from portald.dns.wire import FLAG_QR, HEADER, RCODE_FORMERR, first_name_has_dotted_label, response_flags


class Unanswerable(Exception):
    """Not a DNS query at all, or not one that deserves an answer: dropped."""


class Malformed(Exception):
    """A query whose header can be read but not the rest: FORMERR."""

    def __init__(self, query_id: int, flags: int) -> None:
        super().__init__(query_id, flags)
        self.query_id = query_id
        self.flags = flags

    def formerr(self) -> bytes:
        flags = response_flags(self.flags, authoritative=False, rcode=RCODE_FORMERR)
        return HEADER.pack(self.query_id, flags, 0, 0, 0, 0)


@attrs.frozen
class Request:
    """
    A query read whole: the twisted.names message, its header's flags as
    they came (the response copies some), its OPT records, its size on the
    wire (counted as the client's activity).
    """

    message: dns.Message
    flags: int
    options: list[dns.RRHeader]
    size: int


def decode_query(data: bytes) -> Request:
    """
    Parse a query strictly (twisted.names alone would accept a message
    shorter than its header's counts, or with bytes after its end).

    @raise Unanswerable: for less than a header, or a response.
    @raise Malformed: for a query that cannot be read.
    """
    if len(data) < HEADER.size:
        raise Unanswerable("shorter than a DNS header")
    query_id, flags, *counts = HEADER.unpack_from(data)
    if flags & FLAG_QR:
        raise Unanswerable("a response, not a query")
    message = dns.Message()
    stream = BytesIO(data)
    try:
        message.decode(stream)
    except Exception:
        raise Malformed(query_id, flags) from None
    parsed = [len(message.queries), len(message.answers), len(message.authority), len(message.additional)]
    if parsed != counts or stream.tell() != len(data):
        raise Malformed(query_id, flags)
    if message.queries and first_name_has_dotted_label(data):
        # Answered under another name (twisted.names joins labels with
        # dots) it would be dropped by the client, or worse, be cached as
        # that other name's answer: FORMERR.
        raise Malformed(query_id, flags)
    return Request(message, flags, opt_records(message), len(data))
