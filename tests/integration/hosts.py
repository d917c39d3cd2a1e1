"""Other machines on this box for integration tests: one network namespace and one Unix user per host (needs root).

Network. Host index N (1..254) gets one veth pair: `aibh<N>` stays in the root namespace with 10.231.N.1/24, its
peer `aibp<N>` sits in the host's namespace with 10.231.N.2/24 (`host.address`). The namespace holds only `lo` and
that peer and has no default route. So ONE coordinator process in the root namespace that binds 0.0.0.0 (or every
10.231.N.1) is reached by each host at its own `host.coordinator_address` (10.231.N.1), while the host cannot reach
the root namespace's loopback, the other hosts or the outside world. Nothing is routed between interfaces, so
net.ipv4.ip_forward stays as it is.

Users. Each host runs its commands as a fresh system user `aib<index>-<name>-<pid>` with a home of its own (mode
0700 under /tmp), so it cannot read the coordinator's 0700 AIB_HOME. Here /root is 0700 and the venv's interpreter
lives under /root/.pyenv: every command therefore runs in a private mount namespace in which /root is replaced by a
directory that shows only the Python installation (bind-mounted), so the venv works for the other user and no
permission on the real filesystem changes.

Clean-up. Leaving `other_host` (also on an exception) kills every process of the user, deletes the veth pair, the
namespace, the user (and its group) and the home. Leftovers of a crashed earlier run (its pid is gone) are removed
before a host is made. Commands used: ip (iproute2), unshare, setpriv, mount (util-linux), useradd, userdel, sh;
processes are found in /proc and killed with SIGKILL (what `pkill -KILL -u` does), then their zombies waited for.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

SUBNET = "10.231"  # host N uses 10.231.N.0/24
MARKER = "aib test host"  # GECOS of the users we make; only such users are ever removed as leftovers
NETNS_DIR = Path("/run/netns")
TMP = Path(tempfile.gettempdir())
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")  # keeps `aib<index>-<name>-<pid>` within useradd's 32 characters
_OURS = re.compile(r"aib\d+-[a-z][a-z0-9]*-(\d+)")  # user and namespace names: aib<index>-<name>-<pid>
_OURS_TMP = re.compile(r"aib\d+-[a-z][a-z0-9]*-(\d+)-(?:home|view)-[a-z0-9_]+")  # their mkdtemp folders
_ACTIVE: set[int] = set()  # indexes in use by this process
_TOOLS = ("ip", "unshare", "setpriv", "mount", "useradd", "userdel", "sh")


def _tool(name: str) -> str:
    # Absolute paths: the caller's env (PATH included) is handed to the whole wrapper chain.
    return shutil.which(name, path=BASE_PATH) or name


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([_tool(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"`{shlex.join(argv)}` failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _dead(pid: int) -> bool:
    """True when `pid` is not a live process (and not us): what it left behind is a leftover."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@cache
def can_make_hosts() -> str | None:
    """None when this box can make other hosts (root, the tools, `ip netns`), else a sentence saying why not."""
    if os.geteuid() != 0:
        return "making other hosts needs root (network namespaces and Unix users)"
    missing = [t for t in _TOOLS if not shutil.which(t, path=BASE_PATH)]
    if missing:
        return f"making other hosts needs these commands: {', '.join(missing)}"
    probe = f"aib-probe-{os.getpid()}"
    added = _sh("ip", "netns", "add", probe, check=False)
    _sh("ip", "netns", "del", probe, check=False)
    if added.returncode != 0:
        return f"`ip netns add` does not work here: {added.stderr.strip()}"
    return None


def _hidden_python() -> list[Path]:
    """The Python installation behind this venv when it lies under a /root that other users cannot search."""
    base = Path(sys.base_prefix).resolve()
    root = Path("/root")
    if root in base.parents and not os.stat(root).st_mode & 0o001:
        return [base]
    return []


@dataclass
class Host:
    """One other machine: a network namespace, a Unix user with its own home, and its addresses."""

    name: str
    index: int
    netns: str
    user: str
    uid: int
    gid: int
    home: Path
    address: str  # the host's own IP inside its namespace
    coordinator_address: str  # where this host reaches a coordinator that binds 0.0.0.0 in the root namespace
    view: Path | None = None  # the stand-in for /root (see the module docstring)
    exposed: list[Path] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The minimal environment of a command on this host, plus `extra`."""
        base = {"PATH": BASE_PATH, "HOME": str(self.home), "LANG": "C.UTF-8", "USER": self.user, "LOGNAME": self.user}
        return base | dict(extra or {})

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside this host's namespace as its user."""
        steps = ["set -e"]
        if self.view is not None:
            for path in self.exposed:
                target = self.view / path.relative_to("/root")
                steps.append(f"{_tool('mount')} --bind {shlex.quote(str(path))} {shlex.quote(str(target))}")
            steps.append(f"{_tool('mount')} --rbind {shlex.quote(str(self.view))} /root")
        steps.append(f'exec {_tool("setpriv")} --reuid={self.uid} --regid={self.gid} --init-groups -- "$@"')
        # `unshare --mount` gives every command a private mount namespace, so the /root stand-in never leaks out.
        return [
            _tool("ip"), "netns", "exec", self.netns,
            _tool("unshare"), "--mount", "--propagation", "private", "--",
            _tool("sh"), "-c", "\n".join(steps), f"aib-{self.name}", *argv,
        ]  # fmt: skip

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kw) -> subprocess.Popen:
        """Start `argv` on this host (own session, cwd = home unless given); it is killed when the host goes."""
        kw.setdefault("cwd", self.home)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.command(argv), env=self.env(env), **kw)
        self.procs.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess:
        """Run `argv` on this host to the end; output is captured as text unless `stdout`/`stderr` are given."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        proc = self.popen(argv, env, **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    # The whole session: the wrapper chain runs as root until setpriv, so killing by uid alone could miss it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


def _pids_of(uid: int) -> tuple[list[int], list[int]]:
    """The live processes and the zombies whose real, effective or saved uid is `uid`."""
    live, zombies = [], []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in Path(entry.path, "status").read_text().splitlines())
        except (OSError, ValueError):
            continue  # gone meanwhile
        if str(uid) in fields["Uid"].split()[:3]:
            (zombies if fields["State"].split()[0] == "Z" else live).append(int(entry.name))
    return live, zombies


def _kill_user(uid: int) -> str | None:
    """SIGKILL every process of `uid` until none is left (they may fork meanwhile); a sentence when some survive."""
    if uid < 100:  # never a system account, let alone root
        return f"refusing to kill the processes of uid {uid}"
    deadline = time.monotonic() + 10
    while True:
        live, zombies = _pids_of(uid)
        if not live and not zombies:
            return None
        if time.monotonic() > deadline:
            # A zombie holds nothing but its pid; only live processes are a failure.
            return f"processes {live} of uid {uid} survive SIGKILL" if live else None
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Orphans are reaped by PID 1, which here (a VM's process_api) takes up to ~2 s: wait for that too, so
        # that `pgrep -u` shows nothing afterwards.
        time.sleep(0.02)


def _remove_user(user: str) -> list[str]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return []
    if entry.pw_gecos != MARKER:
        return [f"user {user} exists but is not one of ours; left alone"]
    problems = [p for p in [_kill_user(entry.pw_uid)] if p]
    r = _sh("userdel", user, check=False)
    if r.returncode not in (0, 6):  # 6: no such user (gone meanwhile)
        problems.append(f"userdel {user}: {r.stderr.strip()}")
    return problems


def _remove_link(veth: str) -> list[str]:
    if not Path("/sys/class/net", veth).exists():
        return []
    # Deleting one end of a veth pair deletes its peer in the namespace too.
    r = _sh("ip", "link", "del", veth, check=False)
    if r.returncode != 0 and Path("/sys/class/net", veth).exists():
        return [f"ip link del {veth}: {r.stderr.strip()}"]
    return []


def _remove_netns(netns: str) -> list[str]:
    if not (NETNS_DIR / netns).exists():
        return []
    r = _sh("ip", "netns", "del", netns, check=False)
    if r.returncode != 0 and (NETNS_DIR / netns).exists():
        return [f"ip netns del {netns}: {r.stderr.strip()}"]
    return []


def _remove_view(view: Path) -> None:
    # rmdir only, bottom-up: the view holds empty mount points and never anything worth a recursive delete.
    for dirpath, _dirs, _files in sorted(os.walk(view), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _remove_all(*, procs=(), user=None, veth=None, netns=None, home=None, view=None) -> list[str]:
    """Idempotent clean-up of whatever of these exists; returns what could not be removed."""
    problems: list[str] = []
    for proc in procs:
        _kill_group(proc)
    if user:
        problems += _remove_user(user)
    if veth:
        problems += _remove_link(veth)
    if netns:
        problems += _remove_netns(netns)
    if home and home.exists():
        shutil.rmtree(home, ignore_errors=True)
        if home.exists():
            problems.append(f"could not remove {home}")
    if view and view.exists():
        _remove_view(view)
    return problems


def _link_owner(veth: str) -> int | None:
    try:
        alias = Path("/sys/class/net", veth, "ifalias").read_text().strip()
    except OSError:
        return None
    m = re.fullmatch(r"aib pid=(\d+)", alias)
    return int(m.group(1)) if m else None


def _clear_leftovers(index: int, veth: str) -> None:
    """Remove what crashed runs (their pid is gone) left behind, and refuse an index that a live run holds."""
    owner = _link_owner(veth)
    if owner is not None and owner != os.getpid() and not _dead(owner):
        raise RuntimeError(f"host index {index} ({veth}) is in use by the live process {owner}")
    problems = _remove_link(veth)
    for entry in pwd.getpwall():
        m = _OURS.fullmatch(entry.pw_name)
        if m and entry.pw_gecos == MARKER and _dead(int(m.group(1))):
            problems += _remove_user(entry.pw_name)
    for netns in os.listdir(NETNS_DIR) if NETNS_DIR.is_dir() else []:
        m = _OURS.fullmatch(netns)
        if m and _dead(int(m.group(1))):
            problems += _remove_netns(netns)
    for path in TMP.iterdir():
        m = _OURS_TMP.fullmatch(path.name)
        if m and _dead(int(m.group(1))) and path.is_dir() and not path.is_symlink():
            if "-view-" in path.name:
                _remove_view(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
    if problems:
        raise RuntimeError("leftovers of an earlier run could not be removed: " + "; ".join(problems))


def _wait_up(veth: str, netns: str, peer: str) -> None:
    # Both ends must report carrier before the first packet, or the first connect can fail.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        root_up = Path("/sys/class/net", veth, "operstate").read_text().strip() == "up"
        peer_up = "LOWER_UP" in _sh("ip", "-n", netns, "-o", "link", "show", peer).stdout
        if root_up and peer_up:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{veth} <-> {peer} did not come up")


def _make(name: str, index: int, expose: Sequence[str | Path], made: dict) -> Host:
    """Make the user, home, /root stand-in, namespace and veth pair, noting each in `made` for the clean-up."""
    pid = os.getpid()
    veth, peer = f"aibh{index}", f"aibp{index}"
    _clear_leftovers(index, veth)
    # Only now are these names ours to remove: a refused index stays with the live run that holds it.
    user = netns = made["user"] = made["netns"] = f"aib{index}-{name}-{pid}"
    made["veth"] = veth
    problems = _remove_all(**made)  # the same names from an earlier attempt in this process that was not removed
    if problems:
        raise RuntimeError("; ".join(problems))

    home = made["home"] = Path(tempfile.mkdtemp(prefix=f"{user}-home-", dir=TMP))
    _sh("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
        "--shell", "/usr/sbin/nologin", "--comment", MARKER, user)  # fmt: skip
    entry = pwd.getpwnam(user)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)

    exposed = _hidden_python() + [Path(p).resolve() for p in expose]
    view = None
    if exposed:
        view = made["view"] = Path(tempfile.mkdtemp(prefix=f"{user}-view-", dir=TMP))
        os.chmod(view, 0o755)
        for path in exposed:
            if Path("/root") not in path.parents:
                raise ValueError(f"expose: {path} is not under /root")
            target = view / path.relative_to("/root")
            target.mkdir(parents=True, exist_ok=True)
            for d in [target, *target.parents[: len(target.relative_to(view).parts) - 1]]:
                os.chmod(d, 0o755)  # the user must search its way down to the mount point

    root_ip, host_ip = f"{SUBNET}.{index}.1", f"{SUBNET}.{index}.2"
    _sh("ip", "netns", "add", netns)
    _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", netns)
    _sh("ip", "link", "set", veth, "alias", f"aib pid={pid}")  # marks the index as taken (see _clear_leftovers)
    _sh("ip", "addr", "add", f"{root_ip}/24", "dev", veth)
    _sh("ip", "link", "set", veth, "up")
    _sh("ip", "-n", netns, "addr", "add", f"{host_ip}/24", "dev", peer)
    _sh("ip", "-n", netns, "link", "set", peer, "up")
    _sh("ip", "-n", netns, "link", "set", "lo", "up")
    _wait_up(veth, netns, peer)
    host = made["host"] = Host(
        name=name, index=index, netns=netns, user=user, uid=entry.pw_uid, gid=entry.pw_gid, home=home,
        address=host_ip, coordinator_address=root_ip, view=view, exposed=exposed,
    )  # fmt: skip
    return host


@contextmanager
def other_host(name: str, index: int, *, expose: Sequence[str | Path] = ()) -> Iterator[Host]:
    """A fresh machine `name` on 10.231.<index>.0/24 (`expose`: more /root paths it may see), removed on exit."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"host name {name!r}: 1-12 lowercase letters and digits, starting with a letter")
    if not 1 <= index <= 254:
        raise ValueError(f"host index {index}: 1..254")
    reason = can_make_hosts()
    if reason:
        raise RuntimeError(reason)
    if index in _ACTIVE:
        raise RuntimeError(f"host index {index} is already in use in this process")
    _ACTIVE.add(index)
    made: dict = {}

    def remove() -> list[str]:
        host = made.pop("host", None)
        return _remove_all(procs=host.procs if host else (), **made)

    try:
        try:
            yield _make(name, index, expose, made)
        except BaseException:
            problems = remove()
            if problems:
                # The test's own failure matters more: say what is left without replacing it.
                warnings.warn("other_host clean-up: " + "; ".join(problems), stacklevel=3)
            raise
        problems = remove()
        if problems:
            raise RuntimeError("other_host clean-up: " + "; ".join(problems))
    finally:
        _ACTIVE.discard(index)
