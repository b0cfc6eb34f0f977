"""
portald as a RADIUS NAS: the ``radius`` way in, accounting with a durable
queue, and dynamic authorization (Disconnect and CoA, RFC 5176).  Packets
are encoded and checked by pyrad's packet layer; they travel over Twisted
UDP, never blocking the reactor.
"""
