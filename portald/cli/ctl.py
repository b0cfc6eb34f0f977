"""
``portald-ctl``: the staff's hand on a running portald, through its control
socket.  Tables for people, ``--json`` for scripts.

Exit status: 0 done, 1 refused (portald said why), 2 portald could not be
reached (or the command line is wrong).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import grp
import http.client
import io
import json
import socket
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from portald.admin.accounts import AccountsError, check_name, read_accounts, remove_account, set_account
from portald.cli import prog
from portald.config import DEFAULT_CONFIG_PATH, Config, ConfigError, byte_count, duration_seconds, load_config
from portald.humane import bytes_text, count_text, deadline, duration_text, when_text
from portald.rates import rate_bits, rate_in_range, rate_text
from portald.vouchers.sheet import LAYOUTS, Slip, render_sheet

DONE, REFUSED, UNREACHABLE = 0, 1, 2
TIMEOUT = 10.0


class Unreachable(Exception):
    """portald could not be asked; the message says why and what to do."""


class Refusal(Exception):
    """portald answered that it did not do it; the message is its reason."""


class _UNIXConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("portald", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def _group_of(path: Path) -> str:
    try:
        return grp.getgrgid(path.stat().st_gid).gr_name
    except (OSError, KeyError):
        return "that owns it"


def call(path: Path, method: str, target: str, body: dict[str, Any] | None = None) -> Any:
    """One API call on the socket at C{path}: its JSON answer.

    @raise Unreachable: no socket, no permission, nobody listening.
    @raise Refusal: portald's answer was an error.
    """
    connection = _UNIXConnection(path)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, target, payload, headers)
        response = connection.getresponse()
        data = response.read()
    except FileNotFoundError:
        raise Unreachable(
            f"portald is not running, or control.socket is elsewhere: {path} does not exist"
        ) from None
    except PermissionError:
        raise Unreachable(
            f"permission denied on {path}: add yourself to the group '{_group_of(path)}'"
        ) from None
    except ConnectionRefusedError:
        raise Unreachable(f"portald is not running: nothing answers on {path}") from None
    except (OSError, http.client.HTTPException) as e:
        raise Unreachable(f"cannot talk to portald on {path}: {e}") from None
    finally:
        connection.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise Unreachable(f"{path} answered something that is not portald's API") from None
    if response.status != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise Refusal(error or f"portald answered {response.status}")
    return answer


# --- showing answers -------------------------------------------------------------


def _ago(when: float | None, now: float) -> str:
    return "never" if when is None else f"{duration_text(max(0.0, now - when))} ago"


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headings, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headings, *rows)
    ]
    return "\n".join(lines)


def show_status(status: dict[str, Any], now: float) -> str:
    methods = ", ".join(f"{method} {count}" for method, count in status["by_method"].items())
    lines = [
        f"portald {status['version']}, up {duration_text(status['uptime_seconds'])}",
        f"devices known {status['devices_known']}, signed in {status['signed_in']}"
        + (f" ({methods})" if methods else "")
        + f", always allowed {status['always_allowed']}",
    ]
    health = status["health"]
    firewall = health.get("firewall")
    if firewall is not None:
        if firewall.get("backend") == "none":
            lines.append("firewall  none: nothing enforced in the kernel (firewall.backend: none)")
        else:
            lines.append(
                f"firewall  {firewall['backend']} {firewall['table']}: last apply {_ago(firewall['last_apply'], now)},"
                f" {firewall['last_result']} (batches {firewall['batches']}, reloads {firewall['reloads']},"
                f" failures {firewall['failures']})"
            )
    for source in health.get("leases", []):
        lines.append(
            f"leases    {source['path']} ({source['format']}): {source['state']}, {count_text(source['leases'], 'lease')},"
            f" read {_ago(source['last_read'], now)}"
        )
    upstreams = health.get("upstreams", [])
    if not upstreams and "upstreams" in health:
        lines.append("upstream  none configured: signed-in guests get SERVFAIL")
    for upstream in upstreams:
        lines.append(
            f"upstream  {upstream['address']}: last answer {_ago(upstream['last_answer'], now)},"
            f" {upstream['answers']} answers, {upstream['failures']} failures"
        )
    reactor = health.get("reactor")
    if reactor is not None:
        lines.append(
            f"reactor   last tick {reactor['lag_seconds'] * 1000:.1f} ms late, {count_text(reactor['stalls'], 'stall')}"
            " (ticks over 100 ms late) since start"
        )
    radius = health.get("radius")
    if radius is not None:
        for server in radius.get("authentication", []):
            lines.append(
                f"radius    {server['server']}: {'alive' if server['alive'] else 'SKIPPED (did not answer)'},"
                f" {server['answered']} answers, {server['timeouts']} timeouts"
            )
        accounting = radius.get("accounting")
        if accounting is not None:
            lines.append(
                f"radius    accounting: {count_text(accounting['waiting'], 'record')} waiting,"
                f" {accounting['sent']} sent, {accounting['dropped']} dropped"
            )
    store = health.get("store")
    if store is not None:
        lines.append(
            f"store     {store['path']}: {'writable' if store['writable'] else 'NOT WRITABLE'},"
            f" slowest write {store['longest_write_ms']} ms"
        )
    return "\n".join(lines)


def show_clients(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no device is signed in (--all: every device portald knows of)"
    headings = ("MAC", "IP", "HOSTNAME", "METHOD", "LEFT", "IDLE", "UP", "DOWN", "QUOTA LEFT")
    cells = [
        (
            row["mac"],
            row["ip"] or "-",
            row["hostname"] or "-",
            row["method"] or "(captive)",
            "no end"
            if row["signed_in"] and row["seconds_remaining"] is None
            else duration_text(row["seconds_remaining"]),
            duration_text(row["idle_seconds"]),
            bytes_text(row["bytes_up"]),
            bytes_text(row["bytes_down"]),
            bytes_text(row["quota_remaining"]),
        )
        for row in rows
    ]
    if any(row.get("rate_down") is not None for row in rows):
        # A portald that shapes: each device's rates, as the kernel applies them.
        headings += ("RATE DOWN/UP",)
        cells = [
            (
                *cell,
                "-"
                if row.get("rate_down") is None
                else f"{rate_text(row['rate_down'])}/{rate_text(row['rate_up'])}",
            )
            for cell, row in zip(cells, rows, strict=True)
        ]
    return _table(headings, cells)


def show_allowed(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no device is always allowed"
    cells = [
        (row["mac"], "configuration" if row["source"] == "config" else "staff", row["note"] or "")
        for row in rows
    ]
    return _table(("MAC", "FROM", "NOTE"), cells)


# --- the command line -----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("portald.cli.ctl"),
        description="Ask a running portald, or tell it what to do, through its control socket.",
        epilog="Exit status: 0 done, 1 refused (portald says why), 2 portald could not be reached.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--config", default=DEFAULT_CONFIG_PATH, help="portald's configuration (for control.socket)"
    )
    where.add_argument("--socket", type=Path, help="the control socket itself")
    parser.add_argument("--json", action="store_true", help="the API's JSON answer, for scripts")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("status", help="version, uptime, counts and each part's health")
    clients = commands.add_parser("clients", help="the signed-in devices")
    clients.add_argument("--all", action="store_true", help="every device portald knows of")
    auth = commands.add_parser("auth", help="sign a device in as staff")
    auth.add_argument("device", metavar="MAC|IP")
    auth.add_argument("--duration", help="how long, such as 30m, 2h or 1d (default: a session's length)")
    auth.add_argument("--note", help="why, for the log and the clients list")
    deauth = commands.add_parser("deauth", help="end a device's session (the portal says: ended by staff)")
    deauth.add_argument("device", metavar="MAC|IP")
    extend = commands.add_parser("extend", help="move the end of a device's session later")
    extend.add_argument("device", metavar="MAC|IP")
    extend.add_argument("duration", help="how much later, such as 30m or 2h")
    rate = commands.add_parser("rate", help="give a signed-in device its own download and upload rates, live")
    rate.add_argument("device", metavar="MAC|IP")
    rate.add_argument(
        "down", metavar="DOWN", help="such as 4Mbit or 500kbit; 0 unlimited; default: its way in's"
    )
    rate.add_argument("up", metavar="UP", help="the same, for uploads")
    allow = commands.add_parser("allow", help="let a device pass without signing in, until disallowed")
    allow.add_argument("mac", metavar="MAC")
    allow.add_argument("--note", help="whose device, for the list")
    disallow = commands.add_parser("disallow", help="take a device off the always-allowed list")
    disallow.add_argument("mac", metavar="MAC")
    commands.add_parser("allowed", help="the always-allowed list")
    commands.add_parser("reload", help="read the configuration file again (as SIGHUP)")
    admin = commands.add_parser("admin", help="staff accounts of the admin page (in admin.users_file)")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")
    add_user = admin_commands.add_parser("add-user", help="add an account, or set its password (asked twice)")
    add_user.add_argument("name")
    add_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (for scripts)"
    )
    remove_user = admin_commands.add_parser("remove-user", help="remove an account")
    remove_user.add_argument("name")
    admin_commands.add_parser("users", help="the accounts' names")
    admin.add_argument("--users-file", type=Path, help="the accounts file itself (default: admin.users_file)")
    commands.add_parser(
        "dhcp-options",
        help="the lines that announce the Captive Portal API to DHCP and RA servers (from the file alone)",
    )
    vouchers = commands.add_parser("vouchers", help="make, list, withdraw vouchers").add_subparsers(
        dest="voucher_command", required=True, metavar="WHAT"
    )
    create = vouchers.add_parser("create", help="make vouchers (their codes are shown this once)")
    create.add_argument("--count", type=int, default=1, help="how many (default 1, at most 10000)")
    create.add_argument("--duration", required=True, help="each one's time from its first use, such as 1d")
    create.add_argument("--devices", type=int, default=1, help="devices at once (default 1)")
    create.add_argument("--quota", help="data allowance, shared by its devices, such as 2GB")
    create.add_argument("--valid-until", help="a hard deadline, YYYY-MM-DD (midnight UTC) or a Unix time")
    create.add_argument(
        "--rate-down", help="its devices' download rate, such as 10Mbit (needs shaping.uplink)"
    )
    create.add_argument("--rate-up", help="its devices' upload rate, such as 2Mbit")
    create.add_argument("--note", help="for the list, such as 'front desk'")
    create.add_argument("--batch", help="the batch's name (default: today's date and a random tag)")
    create.add_argument("--csv", action="store_true", help="the codes as CSV")
    create.add_argument(
        "--sheet", type=Path, metavar="FILE.html", help="also write a printable sheet of them"
    )
    create.add_argument(
        "--layout", choices=LAYOUTS, default="a4", help="the sheet's: A4 cards (default) or receipt slips"
    )
    listing = vouchers.add_parser("list", help="the vouchers and their state")
    listing.add_argument("--batch")
    listing.add_argument("--state", help="unused, active, used-up, expired or revoked")
    show = vouchers.add_parser("show", help="one voucher, by its code or its id")
    show.add_argument("code", metavar="CODE|ID")
    revoke = vouchers.add_parser("revoke", help="withdraw vouchers (their devices are cut off)")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("code", nargs="?", metavar="CODE|ID")
    which.add_argument("--batch")
    vouchers.add_parser("prune", help="forget vouchers that ended more than 30 days ago")
    return parser


def _valid_until(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return deadline(text)
    except ValueError as e:
        raise Refusal(str(e)) from None


def _rate(text: str | None, what: str, *, optional: bool = False) -> int | None:
    """A rate given on the command line in bit/s; None for "default" (or nothing, where C{optional})."""
    if text is None and optional:
        return None
    if text is None or text.lower() == "default":
        return None
    bits = rate_bits(text)
    if not rate_in_range(bits):
        raise Refusal(
            f"{what}: {text!r} is not a rate: expected one such as 4Mbit or 500kbit, 0 for unlimited"
        )
    return bits


def _voucher_request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    what = args.voucher_command
    if what == "create":
        quota = None
        if args.quota is not None:
            quota = byte_count(args.quota)
            if not quota:
                raise Refusal(f"{args.quota!r} is not a data amount: expected one such as 500MB or 2GB")
        body = {
            "count": args.count,
            "duration": _seconds(args.duration),
            "devices": args.devices,
            "quota": quota,
            "valid_until": _valid_until(args.valid_until),
            "note": args.note,
            "batch": args.batch,
            "rate_down": _rate(args.rate_down, "--rate-down", optional=True),
            "rate_up": _rate(args.rate_up, "--rate-up", optional=True),
        }
        return "POST", "/v1/vouchers/create", body
    if what == "list":
        query = urllib.parse.urlencode({k: v for k, v in (("batch", args.batch), ("state", args.state)) if v})
        return "GET", "/v1/vouchers" + (f"?{query}" if query else ""), None
    if what == "show":
        return "GET", "/v1/voucher?" + urllib.parse.urlencode({"code": args.code}), None
    if what == "revoke":
        return "POST", "/v1/vouchers/revoke", {"code": args.code, "batch": args.batch}
    return "POST", "/v1/vouchers/prune", {}


def show_vouchers(rows: list[dict[str, Any]], *, codes: bool = False) -> str:
    if not rows:
        return "no voucher"
    headings = ("CODE",) if codes else ("ID",)
    headings += ("BATCH", "STATE", "DURATION", "DEVICES", "QUOTA", "ENDS", "NOTE")
    cells = [
        (
            row["code"] if codes else row["id"],
            row["batch"],
            row["state"],
            duration_text(row["duration"]),
            f"{len(row['devices_now'])}/{row['devices']}",
            bytes_text(row["quota"]) if row["quota"] else "-",
            when_text(row["ends"]),
            row["note"],
        )
        for row in rows
    ]
    return _table(headings, cells)


def vouchers_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("code", "batch", "duration_seconds", "devices", "quota_bytes", "valid_until", "note"))
    for row in rows:
        writer.writerow(
            (row["code"], row["batch"], int(row["duration"]), row["devices"], row["quota"] or "",
             int(row["valid_until"]) if row["valid_until"] else "", row["note"])
        )  # fmt: skip
    return out.getvalue().rstrip("\n")


def _shown_vouchers(args: argparse.Namespace, answer: Any) -> str:
    what = args.voucher_command
    if what == "create":
        if args.csv:
            return vouchers_csv(answer["vouchers"])
        count = len(answer["vouchers"])
        return (
            show_vouchers(answer["vouchers"], codes=True)
            + f"\n{count_text(count, 'voucher')} made in batch {answer['batch']} (the codes are shown only now)"
        )
    if what == "list":
        return show_vouchers(answer)
    if what == "show":
        return show_vouchers([answer]) + "".join(f"\n  on {mac}" for mac in answer["devices_now"])
    if what == "revoke":
        withdrawn = len(answer["revoked"])
        already = f" ({answer['already']} already were)" if answer["already"] else ""
        return f"{count_text(withdrawn, 'voucher')} withdrawn{already}"
    return f"{count_text(answer['pruned'], 'voucher')} forgotten"


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    seconds = duration_seconds(text)
    if seconds is None or seconds <= 0:
        raise Refusal(f"{text!r} is not a duration: expected one such as 30m, 2h or 1d")
    return seconds


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    command = args.command
    if command == "vouchers":
        return _voucher_request(args)
    if command == "status":
        return "GET", "/v1/status", None
    if command == "clients":
        return "GET", "/v1/clients" + ("?all=1" if args.all else ""), None
    if command == "allowed":
        return "GET", "/v1/allowed", None
    if command == "reload":
        return "POST", "/v1/reload", {}
    if command == "auth":
        return (
            "POST",
            "/v1/auth",
            {"device": args.device, "duration": _seconds(args.duration), "note": args.note},
        )
    if command == "deauth":
        return "POST", "/v1/deauth", {"device": args.device}
    if command == "extend":
        return "POST", "/v1/extend", {"device": args.device, "duration": _seconds(args.duration)}
    if command == "allow":
        return "POST", "/v1/allow", {"mac": args.mac, "note": args.note}
    if command == "rate":
        return (
            "POST",
            "/v1/rate",
            {"device": args.device, "down": _rate(args.down, "DOWN"), "up": _rate(args.up, "UP")},
        )
    return "POST", "/v1/disallow", {"mac": args.mac}


def _shown(command: str, answer: Any, now: float) -> str:
    if command == "status":
        return show_status(answer, now)
    if command == "clients":
        return show_clients(answer)
    if command == "allowed":
        return show_allowed(answer)
    if command == "auth":
        return f"{answer['mac']} ({answer['ip']}) is signed in by staff for {duration_text(answer['seconds_remaining'])}"
    if command == "extend":
        return f"{answer['mac']}'s session now ends in {duration_text(answer['seconds_remaining'])}"
    if command == "rate":
        return f"{answer['mac']} is shaped to {rate_text(answer['rate_down'])} down, {rate_text(answer['rate_up'])} up"
    if command == "deauth":
        return f"{answer['mac']} ({answer['ip']}): session {answer['ended']}"
    if command == "allow":
        return f"{answer['mac']} is always allowed"
    if command == "reload":
        changed = answer["changed"]
        return "reloaded: " + (", ".join(changed) if changed else "nothing had changed")
    return f"{answer['mac']} is no longer always allowed"


def _open_sheet(path: Path) -> IO[str]:
    try:
        return path.open("w", encoding="utf-8")
    except OSError as e:
        raise Refusal(f"cannot write the sheet {path}: {e.strerror}") from None


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return args.socket
    try:
        return load_config(args.config).control.socket
    except ConfigError as e:
        raise Unreachable(f"cannot find the control socket: {e} (or give --socket PATH)") from None


def dhcp_options(config: Config) -> str:
    """How each DHCP and RA server announces the API (RFC 8910: DHCPv4 114, DHCPv6 103, RA 37)."""
    uri = config.captive_api_url
    lines = [f"# The Captive Portal API (RFC 8908) of {config.portal.venue}: {uri}"]
    if config.http.tls is None:
        lines.append("# warning: http.tls is not set, and phones use the API only over HTTPS")
    if len(uri.encode()) > 255:
        lines.append("# warning: the URI is over 255 bytes, more than a DHCP option holds")
    lines += [
        "",
        "# dnsmasq (dnsmasq.conf): DHCPv4, DHCPv6, and RAs need radvd below",
        f'dhcp-option-force=114,"{uri}"',
        f'dhcp-option=option6:103,"{uri}"',
        "",
        "# ISC dhcpd (dhcpd.conf; its name for option 114 is default-url)",
        f'option default-url "{uri}";',
        "",
        '# Kea (kea-dhcp4.conf and kea-dhcp6.conf, in "option-data")',
        f'{{ "name": "v4-captive-portal", "data": "{uri}" }}',
        f'{{ "name": "v6-captive-portal", "data": "{uri}" }}',
        "",
        "# radvd (radvd.conf, in the interface block of the guests' interface): RA option 37",
        f'AdvCaptivePortalAPI "{uri}";',
    ]
    return "\n".join(lines)


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("The same password again: ") != first:
        raise Refusal("the two passwords differ; nothing was changed")
    return first


def staff_accounts(args: argparse.Namespace) -> str:
    """``portald-ctl admin …``: the accounts file is changed directly (the running portald reads it again)."""
    path = args.users_file if args.users_file is not None else load_config(args.config).admin.users_file
    if args.admin_command == "users":
        names = sorted(read_accounts(path).hashes)
        return "\n".join(names) if names else f"no staff account in {path}"
    if args.admin_command == "remove-user":
        if not remove_account(path, args.name):
            raise Refusal(f"{args.name} has no account in {path}")
        return f"{args.name}'s account is removed from {path} (signed-in pages end at their next click)"
    check_name(args.name)
    replaced = set_account(path, args.name, _new_password(args.password_stdin))
    if replaced:
        return f"{args.name}'s password is changed in {path}"
    return f"{args.name} can now sign in to the admin page (the account is in {path})"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    name = prog("portald.cli.ctl")
    if args.command == "dhcp-options":
        try:
            print(dhcp_options(load_config(args.config)))
        except ConfigError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return REFUSED
        return DONE
    if args.command == "admin":
        try:
            print(staff_accounts(args))
        except (Refusal, AccountsError, ConfigError) as e:
            print(f"{name}: {e}", file=sys.stderr)
            return REFUSED
        return DONE
    sheet = None
    try:
        method, target, body = _request(args)
        if args.command == "vouchers" and args.voucher_command == "create" and args.sheet is not None:
            # Opened first: a sheet that cannot be written makes no voucher.
            sheet = _open_sheet(args.sheet)
        answer = call(socket_path(args), method, target, body)
    except (Refusal, Unreachable) as e:
        if sheet is not None:
            sheet.close()
            args.sheet.unlink(missing_ok=True)
        print(f"{name}: {e}", file=sys.stderr)
        return REFUSED if isinstance(e, Refusal) else UNREACHABLE
    if sheet is not None:
        with sheet:
            sheet.write(render_sheet(Slip.from_dict(answer["slip"]), answer["vouchers"], args.layout))
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.command == "vouchers":
        print(_shown_vouchers(args, answer))
    else:
        print(_shown(args.command, answer, time.time()))
    if sheet is not None:
        # On standard output unless that carries data (JSON, CSV).
        told = sys.stderr if args.json or args.csv else sys.stdout
        print(f"the sheet is in {args.sheet}: open it in a browser and print it", file=told)
    return DONE


if __name__ == "__main__":
    sys.exit(main())
