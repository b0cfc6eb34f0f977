"""
The Debian package, built and installed into a throwaway Debian 12 root.

    deb = build_deb(tmp)                        # make deb, into tmp
    root = DebianRoot.unpack(tmp / "root")      # mmdebstrap's root, cached
    root.run(["dpkg", "-i", root.copy_in(deb)])
    root.run_as_unit(...)                        # a unit's command, its user, its capabilities

The root is made once by ``mmdebstrap`` (Debian's package) with what the
package depends on, and kept as a tarball in ``ROOT_CACHE``; each test
unpacks its own copy.  Commands run in it with ``chroot`` inside a private
mount namespace that has /proc and /dev.  No systemd runs there: the
maintainer scripts' ``deb-systemd-invoke`` starts nothing, as in any chroot.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

REPOSITORY = Path(__file__).parent.parent
ROOT_CACHE = Path(os.environ.get("PORTALD_ROOT_CACHE", "/var/cache/portald-tests"))
# What portald's Depends pull in, systemd for systemd-analyze, and what the
# Raspberry Pi recipe installs (the root has no network of its own in the lab).
ROOT_PACKAGES = (
    "python3",
    "nftables",
    "conntrack",
    "iproute2",
    "adduser",
    "systemd",
    "procps",
    "hostapd",
    "dnsmasq",
)
SUITE = "bookworm"


class RootError(RuntimeError):
    pass


def build_deb(out: Path) -> Path:
    """C{make deb}'s script, its output in C{out}; the .deb's path."""
    result = subprocess.run(
        ["sh", str(REPOSITORY / "packaging" / "build-deb")],
        env={**os.environ, "DEB_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RootError(f"make deb failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    debs = sorted(out.glob("portald_*.deb"))
    if len(debs) != 1:
        raise RootError(f"make deb made {debs}")
    return debs[0]


def repack(deb: Path, version: str, out: Path) -> Path:
    """The same package under another version: a later build, for an upgrade."""
    tree = out / f"repack-{version}"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    lines = [
        f"Version: {version}" if line.startswith("Version:") else line
        for line in control.read_text().splitlines()
    ]
    control.write_text("\n".join(lines) + "\n")
    built = out / f"portald_{version}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(tree), str(built)], check=True, capture_output=True
    )
    shutil.rmtree(tree)
    return built


def cached_root_tarball() -> Path:
    """mmdebstrap's Debian 12 root with C{ROOT_PACKAGES}, made once per package list."""
    key = hashlib.sha256(" ".join((SUITE, *ROOT_PACKAGES)).encode()).hexdigest()[:12]
    tarball = ROOT_CACHE / f"{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    ROOT_CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    result = subprocess.run(
        ["mmdebstrap", "--variant=apt", f"--include={','.join(ROOT_PACKAGES)}", SUITE, str(partial)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RootError(f"mmdebstrap failed:\n{result.stderr[-4000:]}")
    partial.rename(tarball)
    return tarball


class DebianRoot:
    """One unpacked Debian root in a directory of the test's."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def unpack(cls, path: Path) -> DebianRoot:
        path.mkdir(parents=True)
        with tarfile.open(cached_root_tarball()) as tar:
            tar.extractall(path, filter="fully_trusted")
        return cls(path)

    def file(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")

    def copy_in(self, source: Path) -> str:
        shutil.copy(source, self.file("/tmp") / source.name)
        return f"/tmp/{source.name}"

    def chroot_argv(self, argv: Sequence[str], *, binds: Sequence[tuple[Path, str]] = ()) -> list[str]:
        """
        C{argv} in the root, in a mount namespace of its own with /proc, /dev,
        /sys (the network namespace's interfaces) and C{binds} (host directory, path inside) mounted.  The last step
        execs, so the process's PID is C{argv}'s own.
        """
        mounts = [
            f"mount -t proc proc {shlex.quote(str(self.file('/proc')))}",
            f"mount --rbind /dev {shlex.quote(str(self.file('/dev')))}",
            f"mount --rbind /sys {shlex.quote(str(self.file('/sys')))}",
        ]
        for host, inside in binds:
            target = self.file(inside)
            target.mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {shlex.quote(str(host))} {shlex.quote(str(target))}")
        script = " && ".join([*mounts, f'exec chroot {shlex.quote(str(self.path))} "$@"'])
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300, netns: str | None = None
    ) -> subprocess.CompletedProcess:
        """
        Run C{argv} in the root with systemd's clean environment (in network
        namespace C{netns} if given); a CompletedProcess (text).
        """
        inside = self.chroot_argv(["env", "-i", *CLEAN_ENVIRONMENT, *argv])
        result = subprocess.run(
            ["ip", "netns", "exec", netns, *inside] if netns else inside,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RootError(f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


CLEAN_ENVIRONMENT = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")


def unit_settings(unit_file: Path) -> dict[str, list[str]]:
    """Each key of a systemd unit file's [Service] section, with every value it is given."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def as_unit_argv(settings: dict[str, list[str]], command: str) -> list[str]:
    """
    C{command} (an Exec line of the unit) as systemd runs it: the unit's
    user and group, its ambient capabilities and bounding set only, no new
    privileges, systemd's clean environment.
    """
    capabilities = _setpriv_capabilities(settings["AmbientCapabilities"][0])
    bounding = _setpriv_capabilities(settings["CapabilityBoundingSet"][0])
    user, group = settings["User"][0], settings["Group"][0]
    return [
        "setpriv",
        f"--reuid={user}",
        f"--regid={group}",
        "--init-groups",
        f"--inh-caps=-all,{capabilities}",
        f"--ambient-caps=-all,{capabilities}",
        f"--bounding-set=-all,{bounding}",
        "--no-new-privs",
        "--",
        "env",
        "-i",
        *CLEAN_ENVIRONMENT,
        *shlex.split(command),
    ]


def _setpriv_capabilities(unit_value: str) -> str:
    """systemd's "CAP_NET_ADMIN CAP_NET_BIND_SERVICE" as setpriv's "+net_admin,+net_bind_service"."""
    return ",".join("+" + name.lower().removeprefix("cap_") for name in unit_value.split())
