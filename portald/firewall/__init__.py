"""
Enforcement in the kernel: L{IFirewall} and its backends.

* L{portald.firewall.nftables.NftablesFirewall}: one nftables table of
  portald's own (see L{portald.firewall.ruleset} for what is in it).
* L{portald.firewall.none.NoFirewall}: nothing in the kernel (development,
  DNS-only deployments).

Both are observers of the L{portald.table.AuthorizationTable}; the table
never knows about them.  L{make_firewall} picks one from the configuration.
"""

from __future__ import annotations

from typing import Any

from portald.config import Config
from portald.firewall.interface import IFirewall
from portald.table import AuthorizationTable


def make_firewall(config: Config, table: AuthorizationTable, reactor: Any) -> IFirewall:
    """The configured backend, not yet started nor observing C{table}."""
    if config.firewall.backend == "nftables":
        from portald.firewall.nftables import NftablesFirewall
        from portald.firewall.process import SpawnedProcessRunner

        return NftablesFirewall(config, table, reactor, SpawnedProcessRunner(reactor))
    from portald.firewall.none import NoFirewall

    return NoFirewall()


__all__ = ["IFirewall", "make_firewall"]
