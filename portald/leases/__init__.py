"""
Who is behind which IP, as the DHCP server wrote it: parsers of dnsmasq,
ISC dhcpd and Kea lease files (pure functions of the text, L{formats}) and
the watcher that follows the files and feeds L{portald.neighbours}.

May import: L{portald.config}, L{portald.neighbours}, L{portald.addresses},
Twisted.  It never asks the authorization table.
"""

# The namespace of everything the lease modules log, as it was when they
# were one module: what operators' log filters know.
LOG_NAMESPACE = "portald.leases.watcher"
