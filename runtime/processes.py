"""Small OS helpers shared by the run reaper, the chain node manager, servers, tests and benchmarks."""

from __future__ import annotations

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


__all__ = ["free_port", "pid_alive", "port_free", "stop_process_group", "wait_for_http"]
