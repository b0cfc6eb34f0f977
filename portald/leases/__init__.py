"""
Who is behind which IP, as the DHCP server wrote it: parsers of dnsmasq,
ISC dhcpd and Kea lease files (pure functions of the text) and the watcher
that follows the files and feeds L{portald.neighbours}.

* L{model}: the values (L{model.Lease}, what a parse found).
* L{dnsmasq}, L{isc}, L{kea}: one parser per format; L{formats}: them by name.
* L{source}: one file as the watcher knows it, its states and transitions.
* L{notifier}: inotify on the files' directories; L{timers}: the debounce.
* L{arp}: the kernel's neighbour table, the optional fallback.
* L{watcher}: the service that merges the files and publishes the map.

May import: L{portald.config}, L{portald.neighbours}, L{portald.addresses},
Twisted.  It never asks the authorization table.
"""

# The namespace of everything the lease modules log, as it was when they
# were one module: what operators' log filters know.
LOG_NAMESPACE = "portald.leases.watcher"
