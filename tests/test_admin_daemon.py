"""
The admin page of the real ``twistd portald`` (the development
configuration): the development account signs in over real HTTP, its
password checked by scrypt in the reactor's thread pool, and lets a device
in; ``portald-ctl admin`` manages the accounts file.
"""

from __future__ import annotations

import http.client
import re
import subprocess
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from portald.admin.accounts import read_accounts
from tests.daemon_support import dev_config, running

ROOT = Path(__file__).resolve().parent.parent
CTL = ROOT / ".venv" / "bin" / "portald-ctl"
DEV_MAC = "02:00:00:00:00:01"


class Staff:
    """http.client with the cookies a browser would keep."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, dict, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(value)
            for key, morsel in cookie.items():
                self.cookies[key] = morsel.value
        connection.close()
        return response.status, dict(response.headers), text

    def token(self, path: str) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.request("GET", path)[2])
        assert match, path
        return match.group(1)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("admin")
    path = dev_config(tmp_path)
    with running(path, tmp_path) as twistd:
        yield path, twistd


def test_the_development_account_signs_in_and_lets_a_device_in(daemon) -> None:
    path, twistd = daemon
    port = int(yaml.safe_load(path.read_text())["admin"]["listen"].rsplit(":", 1)[1])
    # The welcome lines say where, and as whom.
    assert f"try Admin: http://127.0.0.1:{port}/ in a browser" in twistd.output
    assert "try Admin: sign in as frontdesk, password portald-dev" in twistd.output
    staff = Staff(port)
    status, headers, _ = staff.request("GET", "/")
    assert (status, headers["Location"]) == (303, "/login")
    login = staff.token("/login")
    status, headers, _ = staff.request(
        "POST", "/login", {"csrf": login, "name": "frontdesk", "password": "portald-dev"}
    )
    assert (status, headers["Location"]) == (303, "/")
    status, _, page = staff.request("GET", "/")
    assert status == 200 and "this-computer" in page and DEV_MAC in page
    status, headers, _ = staff.request(
        "POST", "/sessions/auth", {"csrf": staff.token("/"), "device": DEV_MAC}
    )
    assert status == 303
    clients = subprocess.run(
        [str(CTL), "--config", str(path), "--json", "clients"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"method": "staff"' in clients.stdout
    twistd.wait_for("staff frontdesk let 02:00:00:00:00:01 in")
    assert "staff frontdesk signed in to the admin page from 127.0.0.1" in twistd.output


def run_ctl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CTL), *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


def test_portald_ctl_admin_manages_the_accounts_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    made = run_ctl(
        "admin",
        "--users-file",
        str(users),
        "add-user",
        "alice",
        "--password-stdin",
        stdin="a long password\n",
    )
    assert made.returncode == 0 and "alice can now sign in" in made.stdout
    assert read_accounts(users).hashes["alice"].matches("a long password")
    assert users.stat().st_mode & 0o777 == 0o640
    assert run_ctl("admin", "--users-file", str(users), "users").stdout.split() == ["alice"]
    short = run_ctl(
        "admin", "--users-file", str(users), "add-user", "bob", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 1 and "a password needs 8 to 1024 characters" in short.stderr
    gone = run_ctl("admin", "--users-file", str(users), "remove-user", "alice")
    assert gone.returncode == 0 and read_accounts(users).hashes == {}
    again = run_ctl("admin", "--users-file", str(users), "remove-user", "alice")
    assert again.returncode == 1 and "alice has no account" in again.stderr


def test_the_password_is_asked_twice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    from portald.cli import ctl

    answers = iter(["first password", "second password"])
    monkeypatch.setattr(ctl.getpass, "getpass", lambda prompt: next(answers))
    assert ctl.main(["admin", "--users-file", str(tmp_path / "users"), "add-user", "carol"]) == 1
    assert "the two passwords differ; nothing was changed" in capsys.readouterr().err
    assert not (tmp_path / "users").exists()


TWISTD = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "twistd"


def check(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TWISTD), "portald", "--check", "--config", str(path)],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_check_names_admin_keys_that_cannot_work(tmp_path: Path) -> None:
    from tests.tls_support import LabCA

    guest_side = check(dev_config(tmp_path, admin={"allow_guest_side": False}), tmp_path)
    assert guest_side.returncode != 0
    assert "admin.listen: expected an address on the staff's side" in guest_side.stderr
    certificate, _ = LabCA.make().issue(tmp_path, "admin.example")
    (tmp_path / "other").mkdir()
    _, other_key = LabCA.make().issue(tmp_path / "other", "x.example")
    mismatched = check(
        dev_config(tmp_path, admin={"tls": {"certificate": str(certificate), "key": str(other_key)}}),
        tmp_path,
    )
    assert mismatched.returncode != 0 and "admin.tls.key: " in mismatched.stderr, mismatched.stderr
    broken_users = tmp_path / "users"
    broken_users.write_text("nobody\n")
    broken = check(dev_config(tmp_path, admin={"users_file": str(broken_users)}), tmp_path)
    assert (
        broken.returncode != 0
        and f"admin.users_file: {broken_users} line 1: expected name:hash" in broken.stderr
    )
    empty = check(dev_config(tmp_path, admin={"users_file": str(tmp_path / "none-yet")}), tmp_path)
    assert empty.returncode == 0 and "warning: no staff account in" in empty.stdout
