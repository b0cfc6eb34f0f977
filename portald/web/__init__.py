"""
portald on the web: interception of foreign HTTP (511 for people, 302 for
operating systems' probes) and the portal's own pages.

May import: L{portald.config}, L{portald.table} (to ask and command),
L{portald.neighbours}, L{portald.addresses}, L{portald.auth},
L{portald.memo}, L{portald.periodic}, Twisted.  It knows the firewall only
as a callable that says when a sign-in is enforced, and the store only
through the table's journal (a change it refuses is L{portald.table.JournalRefused}).

The hot path, every intercepted request: L{frontdoor} (and, for what it
hands over, L{root}) asks L{intercept}.  The portal's pages: L{root} routes
the portal's Host to the pages of L{signin}, L{account} and L{static}, each
a L{page.PortalPage} sharing one L{portal.Portal}; L{forms} refuses forged
forms, L{replies} writes every page's answer.
"""
