"""
portald's DNS server: answers that depend on who asks.

Captive clients get the portal's address, signed-in clients get real
answers forwarded upstream and cached, walled-garden names are real for
everyone.  The common query takes a hand-parsed fast path (L{wire}); all
else goes through twisted.names, the reference the fast path is tested
against.

May import: L{portald.config}, L{portald.table} (to ask), L{portald.neighbours},
L{portald.addresses}, L{portald.memo}, Twisted.  Nothing of the web or the firewall:
what the firewall needs from DNS it gets through a callback given at build.
"""
