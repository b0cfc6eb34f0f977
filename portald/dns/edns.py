"""
EDNS (RFC 6891) on the twisted.names side: the OPT records of a message,
and portald's own OPT record as twisted.names objects (L{portald.dns.wire}
has the same record as bytes, for the fast path).
"""

from __future__ import annotations

from twisted.names import dns

from portald.dns.wire import EDNS_UDP_SIZE


def opt_records(message: dns.Message) -> list[dns.RRHeader]:
    """The OPT records among C{message}'s additional records."""
    return [record for record in message.additional if record.type == dns.OPT]


def opt_header(
    udp_size: int = EDNS_UDP_SIZE, *, extended_rcode: int = 0, dnssec_ok: bool = False
) -> dns.RRHeader:
    """
    An OPT record of version 0 without options, ready to go in a message's
    additional section.
    """
    # twisted.names has no public way to make an OPT record: _OPTHeader is
    # the class its own resolver uses.  This is the one place portald
    # touches it, so that a change in Twisted is mended here.
    return dns._OPTHeader(  # type: ignore[return-value]
        udpPayloadSize=udp_size, extendedRCODE=extended_rcode, dnssecOK=dnssec_ok
    )
