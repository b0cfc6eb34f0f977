"""Prometheus exposition: portald's own counts, read when scraped, on an admin-side listener."""
