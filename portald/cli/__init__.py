"""
Command-line tools beside the daemon (``python -m portald.cli.NAME``): each
a thin face on a package that does the work.  None runs inside twistd.
"""
