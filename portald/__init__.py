"""portald: a captive-portal appliance on one Twisted reactor."""

__version__ = "0.1.0"
