"""
portald's DNS server: answers that depend on who asks.

Captive clients get the portal's address, signed-in clients get real
answers forwarded upstream and cached, walled-garden names are real for
everyone.  The common query takes a hand-parsed fast path (L{wire}); all
else goes through twisted.names, the reference the fast path is tested
against.

* L{policy}: who gets which answer (L{policy.Policy}), and portald's own
  answers (L{policy.LocalAnswers});
* L{fastpath}: the common UDP queries answered straight from bytes;
* L{wire}: the wire format the fast path reads and writes, and the response
  flags of both paths;
* L{request}: a query read strictly for the full path;
* L{edns}: OPT records on the twisted.names side;
* L{server}: the UDP and TCP protocols, and the full path;
* L{cache}: forwarded answers, bounded in size and time;
* L{upstream}: forwarding to the upstream resolvers;
* L{service}: L{service.DNSService}, the listeners on every configured
  address, composed from the configuration.

May import: L{portald.config}, L{portald.table} (to ask), L{portald.neighbours},
L{portald.addresses}, L{portald.memo}, Twisted.  Nothing of the web or the firewall:
what the firewall needs from DNS it gets through a callback given at build.
"""
