"""
How a guest proves they may pass: L{portald.auth.interface.IAuthenticator}
and its implementations (L{portald.auth.methods}), and the limit on wrong
attempts (L{portald.auth.limits}).

The portal pages only know the interface; a new way in (vouchers, RADIUS)
is a new implementation, not a change to the pages.  This package may
import L{portald.config} and Twisted; it knows nothing of the web, the
table or the firewall.
"""
