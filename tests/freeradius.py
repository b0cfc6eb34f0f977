"""
A real FreeRADIUS (Debian's 3.2), configured by the test in a directory of
its own and run in the foreground (``freeradius -X -d DIR``) on high ports:
PAP users from a ``users`` file, accounting written to a ``detail`` file,
and, for the many-gateways story, the ``sql`` module on SQLite with
Simultaneous-Use.

Debian's 3.2.1 signs an Access-Accept with a Message-Authenticator only
when the reply items ask for one, so every reply here carries
``Message-Authenticator := 0x00`` (the server computes it on sending);
portald discards answers without one (BlastRADIUS, CVE-2024-3596).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

FREERADIUS = shutil.which("freeradius") or "/usr/sbin/freeradius"
RADCLIENT = shutil.which("radclient") or "/usr/bin/radclient"
DICTIONARY_DIR = Path("/usr/share/freeradius")
SQLITE_SCHEMA = Path("/etc/freeradius/3.0/mods-config/sql/main/sqlite/schema.sql")
SQL_QUERIES = Path("/etc/freeradius/3.0/mods-config/sql/main/sqlite/queries.conf")
READY = "Ready to process requests"


def available() -> str | None:
    """Why FreeRADIUS cannot run here, or None."""
    for program in (FREERADIUS, RADCLIENT):
        if not Path(program).exists():
            return f"{program} is missing (Debian's freeradius and freeradius-utils)"
    return None


def _sign_reply() -> str:
    return "update reply {\n\t\tMessage-Authenticator := 0x00\n\t}"


def _reject(message: str) -> str:
    return f'update reply {{\n\t\t\tReply-Message := "{message}"\n\t\t}}' if message else ""


def write_config(
    directory: Path,
    *,
    address: str,
    auth_port: int,
    acct_port: int,
    clients: Sequence[tuple[str, str]],
    users: str,
    sql: bool = False,
    reject_message: str = "",
) -> Path:
    """Write a complete FreeRADIUS configuration in C{directory}; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("log", "run", "acct"):
        (directory / sub).mkdir(exist_ok=True)
    # The standard dictionaries, and CoovaChilli's Gigawords (not in Debian's 3.2.1).
    (directory / "dictionary").write_text(
        f"$INCLUDE {DICTIONARY_DIR}/dictionary\n"
        "BEGIN-VENDOR ChilliSpot\n"
        "ATTRIBUTE ChilliSpot-Max-Input-Gigawords 21 integer\n"
        "ATTRIBUTE ChilliSpot-Max-Output-Gigawords 22 integer\n"
        "ATTRIBUTE ChilliSpot-Max-Total-Gigawords 23 integer\n"
        "END-VENDOR ChilliSpot\n"
    )
    (directory / "users").write_text(users)
    client_blocks = "\n".join(
        f"client c{index} {{\n\tipaddr = {client}\n\tsecret = {secret}\n"
        f"\trequire_message_authenticator = yes\n}}"
        for index, (client, secret) in enumerate(clients)
    )
    sql_module = ""
    sql_in = {"authorize": "", "accounting": "", "session": "", "post-auth": ""}
    if sql:
        database = directory / "radius.db"
        # Debian's 3.2.1 SQLite queries check Simultaneous-Use against '%{SQL-Group}' (empty), so
        # every second login passes: the verify query is mended here to name the user.
        queries = SQL_QUERIES.read_text().replace(
            "username = '%{${group_attribute}}'", "username = '%{SQL-User-Name}'"
        )
        (directory / "queries.conf").write_text(queries)
        sql_module = f"""
	sql {{
		dialect = "sqlite"
		driver = "rlm_sql_sqlite"
		sqlite {{
			filename = "{database}"
			bootstrap = "{SQLITE_SCHEMA}"
		}}
		radius_db = "radius"
		acct_table1 = "radacct"
		acct_table2 = "radacct"
		postauth_table = "radpostauth"
		authcheck_table = "radcheck"
		groupcheck_table = "radgroupcheck"
		authreply_table = "radreply"
		groupreply_table = "radgroupreply"
		usergroup_table = "radusergroup"
		read_groups = yes
		delete_stale_sessions = yes
		pool {{
			start = 1
			min = 1
			max = 2
			spare = 1
			uses = 0
			lifetime = 0
			idle_timeout = 60
		}}
		client_table = "nas"
		group_attribute = "SQL-Group"
		$INCLUDE {directory}/queries.conf
	}}
"""
        sql_in = {"authorize": "sql", "accounting": "sql", "session": "sql", "post-auth": ""}
    (directory / "radiusd.conf").write_text(f"""
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {directory}/log
raddbdir = {directory}
radacctdir = {directory}/acct
name = freeradius
confdir = {directory}
modconfdir = {directory}
certdir = {directory}
cadir = {directory}
run_dir = {directory}/run
db_dir = {directory}
libdir = /usr/lib/freeradius
pidfile = {directory}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 2
max_requests = 16384
hostname_lookups = no
log {{
	destination = stderr
	auth = yes
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
thread pool {{
	start_servers = 2
	max_servers = 8
	min_spare_servers = 1
	max_spare_servers = 4
	max_requests_per_server = 0
}}
{client_blocks}
modules {{
	expr {{
	}}
	pap {{
	}}
	files {{
		filename = {directory}/users
	}}
	detail {{
		filename = {directory}/acct/detail
		header = "%t"
		permissions = 0600
		locking = no
	}}
	{sql_module}
}}
server default {{
	listen {{
		type = auth
		ipaddr = {address}
		port = {auth_port}
	}}
	listen {{
		type = acct
		ipaddr = {address}
		port = {acct_port}
	}}
	authorize {{
		{sql_in["authorize"]}
		files
		pap
		# RFC 5997: answered, and signed (3.2.1 does not sign it by itself).
		Autz-Type Status-Server {{
			{_sign_reply()}
		}}
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
	}}
	preacct {{
		# What the sql module keys its rows by (Debian's acct_unique policy, inline).
		update request {{
			Acct-Unique-Session-Id := "%{{md5:%{{User-Name}},%{{Acct-Session-ID}},%{{NAS-IP-Address}},%{{NAS-Identifier}},%{{Calling-Station-Id}}}}"
		}}
	}}
	accounting {{
		detail
		{sql_in["accounting"]}
	}}
	session {{
		{sql_in["session"]}
	}}
	post-auth {{
		{_sign_reply()}
		Post-Auth-Type REJECT {{
			{_sign_reply()}
			{_reject(reject_message)}
		}}
	}}
}}
""")
    return directory


class FreeRadius:
    """One FreeRADIUS process, started with C{argv_prefix} (a namespace's ``ip netns exec``)."""

    def __init__(self, directory: Path, spawn) -> None:
        self.directory = directory
        self._spawn = spawn
        self.process = None

    def start(self, timeout: float = 15.0) -> None:
        self.process = self._spawn([FREERADIUS, "-X", "-f", "-d", str(self.directory)])
        deadline = time.monotonic() + timeout
        while READY not in self.process.log():
            if not self.process.running():
                raise RuntimeError(f"freeradius exited at start:\n{self.process.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"freeradius did not start:\n{self.process.log()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def detail(self) -> list[dict[str, str]]:
        """The accounting records written so far, each as its attributes."""
        path = self.directory / "acct" / "detail"
        if not path.exists():
            return []
        records = []
        for block in re.split(r"\n\s*\n", path.read_text()):
            attributes = {}
            for line in block.splitlines():
                match = re.match(r"\s+([\w-]+) = (.*)", line)
                if match:
                    attributes[match.group(1)] = match.group(2).strip().strip('"')
            if attributes:
                records.append(attributes)
        return records
