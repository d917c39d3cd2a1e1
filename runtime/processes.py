"""Small OS helpers shared by the run reaper, the chain node manager, servers, tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` exists and has not exited (a zombie counts as exited)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited even though its pid still answers
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def process_started(pid: int | None) -> str | None:
    """When process `pid` started, as the OS counts it; None when there is no such process. With the pid, it names one
    process: a pid reused by a later process has another start time."""
    if not pid:
        return None
    if os.path.isdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                return f.read().rsplit(") ", 1)[1].split()[19]  # field 22, starttime (the name may hold ") ")
        except (OSError, IndexError):
            return None
    # No /proc (macOS): ps gives the start to the second.
    listed = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return listed.stdout.strip() or None


def same_process(pid: int | None, started: str | None) -> bool:
    """Whether `pid` is still the live process that started at `started` (not one that reused its pid)."""
    return started is not None and pid_alive(pid) and process_started(pid) == started


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (its children, theirs, …) right now, each with its start time (see process_started)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            started = process_started(child)
            if started is not None and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process this user can see."""
    if not os.path.isdir("/proc"):
        listed = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False)
        return {int(a): int(b) for a, b in (line.split() for line in listed.stdout.splitlines() if line.strip())}
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                    parents[int(entry.name)] = int(f.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    return parents


def stop_processes(processes: dict[int, str], grace: float = 10.0) -> None:
    """SIGTERM each process (pid -> start time) that is still that process, wait up to `grace` seconds for them all,
    then SIGKILL those left. A pid now held by another process is never signalled."""
    import signal

    def alive() -> list[int]:
        return [pid for pid, started in processes.items() if same_process(pid, started)]

    for pid in alive():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_process_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by `pid` (a child started with start_new_session), then SIGKILL it if its
    leader has not exited within `grace` seconds."""
    import signal

    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def port_free(host: str, port: int) -> bool:
    """Whether `host:port` can be bound right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind (uvicorn, Anvil): connections lingering in TIME_WAIT don't block the port, while a
        # live listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(proc: subprocess.Popen, url: str, timeout_s: float = 60.0) -> bool:
    """Poll `url` until it answers 200 (True); False as soon as `proc` exits or when `timeout_s` has passed."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


__all__ = [
    "descendants",
    "free_port",
    "pid_alive",
    "port_free",
    "process_started",
    "same_process",
    "stop_process_group",
    "stop_processes",
    "wait_for_http",
]
