"""
Enforcement in the kernel: L{interface.IFirewall} and its backends.

* L{nftables.NftablesFirewall}: one nftables table of portald's own
  (L{ruleset} says what is in it), fed by an apply queue (L{applyqueue}),
  with download-counter ownership (L{counters}) and the walled-garden
  addresses learned from DNS (L{garden}); nft runs through L{process}.
* L{none.NoFirewall}: nothing in the kernel (development, DNS-only
  deployments).

Both observe the L{portald.table.AuthorizationTable}; the table never knows
about them, and the build function (L{portald.tap}) picks one.  May import:
L{portald.config}, L{portald.table}, L{portald.addresses}, Twisted.
"""
