"""The other-host helper (tests/integration/hosts.py): isolation, the venv for another user, reachability, clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.hosts import Host, can_make_hosts, other_host

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to the host, whatever the env says

pytestmark = pytest.mark.skipif(can_make_hosts() is not None, reason=can_make_hosts() or "")


class Server:
    """A tiny HTTP server in the root namespace that answers its name and notes who asked."""

    def __init__(self, bind: str, name: str) -> None:
        clients = self.clients = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                clients.append(self.client_address[0])
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((bind, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def coordinator() -> Iterator[Server]:
    server = Server("0.0.0.0", "coordinator")
    yield server
    server.close()


@pytest.fixture()
def loopback_only() -> Iterator[Server]:
    server = Server("127.0.0.1", "loopback")
    yield server
    server.close()


def fetch(host: Host, url: str) -> subprocess.CompletedProcess:
    return host.run(["curl", "-sS", "--max-time", "3", url], timeout=10)


CONNECT = """
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
"""


def connect(host: Host, address: str, port: int) -> str:
    """What a TCP connect from the host gives: "connected" or the errno name (ECONNREFUSED, ENETUNREACH...)."""
    return host.run([str(VENV_PYTHON), "-c", CONNECT, address, str(port)], timeout=10).stdout.strip()


def assert_gone(names: dict) -> None:
    """Nothing of the host is left, checked with the system's own tools rather than the helper's."""
    assert names["netns"] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if "veth" in names:
        assert subprocess.run(["ip", "link", "show", names["veth"]], capture_output=True).returncode != 0
    assert subprocess.run(["getent", "passwd", names["user"]], capture_output=True).returncode == 2
    assert subprocess.run(["getent", "group", names["user"]], capture_output=True).returncode == 2
    assert subprocess.run(["pgrep", "-u", str(names["uid"])], capture_output=True).returncode == 1
    for folder in ("home", "view"):
        assert names[folder] is None or not Path(names[folder]).exists()


def names_of(host: Host) -> dict:
    return {
        "netns": host.netns,
        "veth": f"aibh{host.index}",
        "user": host.user,
        "uid": host.uid,
        "home": str(host.home),
        "view": str(host.view) if host.view else None,
    }


def test_the_host_user_cannot_read_the_coordinators_private_dir(aib_home: Path) -> None:
    private = Path(tempfile.mkdtemp(prefix="coordinator-"))  # root-owned 0700, like the coordinator's AIB_HOME
    (private / "file").write_text("secret")
    (private / "file").chmod(0o644)  # only the folder's mode protects it
    (aib_home / "hosts-fixture-secret").write_text("secret")
    try:
        with other_host("alice", 1) as host:
            assert host.run(["cat", str(REPO / "pyproject.toml")]).returncode == 0  # cat itself works
            for path in (private / "file", aib_home / "hosts-fixture-secret"):
                r = host.run(["cat", str(path)])
                assert r.returncode != 0 and "Permission denied" in r.stderr, r
            assert host.run(["ls", "/root/.cache"]).returncode != 0
            r = host.run(["sh", "-c", 'id -u; echo "$HOME"; touch "$HOME/x" && stat -c "%u %a" "$HOME"'])
            assert r.stdout.splitlines() == [str(host.uid), str(host.home), f"{host.uid} 700"], r
    finally:
        (aib_home / "hosts-fixture-secret").unlink()
        (private / "file").unlink()
        private.rmdir()


def test_the_host_user_runs_the_project_venv() -> None:
    code = (
        "import os, subprocess, sys; import torch, prefect, runtime.protocol; "
        "subprocess.run([sys.executable, '-c', 'pass'], check=True); print(os.getuid()); print(sys.version)"
    )
    with other_host("bob", 1) as host:
        r = host.run([str(VENV_PYTHON), "-c", code], cwd=REPO, timeout=120)
        assert r.returncode == 0, r.stderr
        uid, version = r.stdout.strip().split("\n", 1)
        assert int(uid) == host.uid != 0
        assert version == sys.version  # the venv's own interpreter, not the system's libpython


def test_the_host_reaches_the_coordinator_and_not_the_root_loopback(coordinator: Server, loopback_only: Server) -> None:
    with other_host("carol", 1) as host:
        r = fetch(host, f"http://{host.coordinator_address}:{coordinator.port}/")
        assert (r.returncode, r.stdout) == (0, "coordinator"), r
        assert coordinator.clients == [host.address]
        # 127.0.0.1 inside the namespace is the host's own loopback, where nothing listens.
        assert connect(host, "127.0.0.1", coordinator.port) == "ECONNREFUSED"
        assert connect(host, "127.0.0.1", loopback_only.port) == "ECONNREFUSED"
        assert connect(host, host.coordinator_address, loopback_only.port) == "ECONNREFUSED"
        assert loopback_only.clients == []
        assert "default" not in host.run(["ip", "route"]).stdout  # no way out of the box either


def test_the_coordinator_reaches_a_server_on_the_host() -> None:
    with other_host("heidi", 1) as host:
        (host.home / "index.html").write_text("on the host")
        server = host.popen(
            [str(VENV_PYTHON), "-m", "http.server", "--bind", "0.0.0.0", "8000"], stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with NO_PROXY.open(f"http://{host.address}:8000/index.html", timeout=2) as answer:
                    assert answer.read() == b"on the host"
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the host's server did not answer"
                time.sleep(0.05)


def test_everything_is_removed_after_the_host() -> None:
    with other_host("dave", 3) as host:
        host.popen(["sleep", "300"])
        # A daemon in its own session, unknown to the helper, must go as well.
        r = host.run(["sh", "-c", "setsid sleep 301 >/dev/null 2>&1 & echo $!"])
        daemon = int(r.stdout)
        os.kill(daemon, 0)
        names = names_of(host)
        assert subprocess.run(["pgrep", "-u", str(host.uid)], capture_output=True).returncode == 0
    assert_gone(names)
    with pytest.raises(ProcessLookupError):
        os.kill(daemon, 0)


def test_everything_is_removed_when_the_test_fails() -> None:
    with pytest.raises(RuntimeError, match="the test failed"):
        with other_host("erin", 4) as host:
            host.popen(["sleep", "300"])
            names = names_of(host)
            raise RuntimeError("the test failed")
    assert_gone(names)


def test_two_hosts_at_once(coordinator: Server) -> None:
    with other_host("frank", 1) as one, other_host("grace", 2) as two:
        assert (one.coordinator_address, two.coordinator_address) == ("10.231.1.1", "10.231.2.1")
        for host in (one, two):
            r = fetch(host, f"http://{host.coordinator_address}:{coordinator.port}/")
            assert (r.returncode, r.stdout) == (0, "coordinator"), r
        assert sorted(coordinator.clients) == ["10.231.1.2", "10.231.2.2"]
        # The hosts are apart: no route to the other's subnet, and no access to the other's home.
        assert connect(one, two.coordinator_address, coordinator.port) == "ENETUNREACH"
        assert connect(one, two.address, coordinator.port) == "ENETUNREACH"
        (two.home / "mine").write_text("two's")
        assert "Permission denied" in one.run(["cat", str(two.home / "mine")]).stderr
        names = [names_of(one), names_of(two)]
    for n in names:
        assert_gone(n)


CRASHER = """
import json, sys, time
from tests.integration.hosts import other_host
with other_host("crash", 9) as h:
    h.popen(["sleep", "300"])
    old = {"netns": h.netns, "user": h.user, "uid": h.uid, "home": str(h.home), "view": str(h.view)}
    print(json.dumps(old), flush=True)
    time.sleep(300)
"""


def test_leftovers_of_a_crashed_run_are_removed() -> None:
    with subprocess.Popen([sys.executable, "-c", CRASHER], cwd=REPO, stdout=subprocess.PIPE, text=True) as crasher:
        try:
            old = json.loads(crasher.stdout.readline())
            with pytest.raises(RuntimeError, match="in use by the live process"):  # a live run keeps its index
                with other_host("crash", 9):
                    pass
            assert subprocess.run(["ip", "link", "show", "aibh9"], capture_output=True).returncode == 0  # untouched
        finally:
            crasher.send_signal(signal.SIGKILL)  # no clean-up runs: what a crash leaves behind
    assert old["netns"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["getent", "passwd", old["user"]], capture_output=True).returncode == 0

    with other_host("crash", 9) as host:
        assert_gone(old)  # the dead run's user (and its sleep), namespace and folders; aibh9 is the new host's
        assert host.run(["true"]).returncode == 0
        names = names_of(host)
    assert_gone(names)
