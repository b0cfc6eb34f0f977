"""
portald on the web: interception of foreign HTTP (511 for people, 302 for
operating systems' probes) and the portal's own pages.

May import: L{portald.config}, L{portald.table} (to ask and command),
L{portald.neighbours}, L{portald.auth}, L{portald.memo}, Twisted.  It
knows the firewall only as a callable that says when a sign-in is
enforced, and the store only through the table's journal.
"""
