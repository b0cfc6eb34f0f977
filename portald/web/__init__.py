"""
portald on the web: interception of foreign HTTP (511 for people, 302 for
operating systems' probes) and the portal's own pages.
"""
