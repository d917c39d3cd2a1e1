"""The embedded chain: a local Anvil node under AIB_HOME (state survives restarts) and its address book."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import ChainError
from runtime.config import get_settings
from runtime.processes import pid_alive, port_free

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8545
CHAIN_ID = 31337
STATE_INTERVAL_S = 1  # dump state every second, so even a killed node loses at most a second


@dataclass(frozen=True)
class ChainPaths:
    """Files of the embedded chain under AIB_HOME/chain."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "anvil-state.json"

    @property
    def pid(self) -> Path:
        return self.root / "anvil.pid"

    @property
    def log(self) -> Path:
        return self.root / "anvil.log"

    @property
    def book(self) -> Path:
        return self.root / "addresses.json"


def chain_paths() -> ChainPaths:
    """Where the embedded chain keeps its files."""
    return ChainPaths(get_settings().home / "chain")


def anvil_binary() -> Path:
    """The Anvil executable shipped by the npm package @foundry-rs/anvil (installed by the Makefile)."""
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    path = ROOT / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if not path.exists():
        raise ChainError(f"Anvil is not installed ({path} is missing); run `make install` (it runs `npm ci`)")
    return path


def rpc_call(url: str, method: str, params: list | None = None, timeout: float = 2.0) -> Any:
    """One JSON-RPC call; ChainError with the URL when the node cannot be reached or answers an error."""
    import httpx

    try:
        r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=timeout)
        body = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ChainError(f"no Ethereum node answers at {url} ({type(exc).__name__})") from None
    if "error" in body:
        raise ChainError(f"the node at {url} refused {method}: {body['error'].get('message', body['error'])}")
    return body["result"]


def _read_pid(paths: ChainPaths) -> int | None:
    try:
        pid = int(paths.pid.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _url_of(paths: ChainPaths) -> str | None:
    try:
        return paths.pid.read_text().split()[1]
    except (OSError, IndexError):
        return None


def local_status() -> dict[str, Any]:
    """Whether the embedded node runs, where, and what it has deployed."""
    paths = chain_paths()
    pid = _read_pid(paths)
    status: dict[str, Any] = {"running": False, "pid": None, "rpc_url": _url_of(paths), "state_file": str(paths.state)}
    if pid is not None and status["rpc_url"]:
        try:
            status["block_number"] = int(rpc_call(status["rpc_url"], "eth_blockNumber"), 16)
            status["chain_id"] = int(rpc_call(status["rpc_url"], "eth_chainId"), 16)
            status.update(running=True, pid=pid)
        except ChainError:
            pass
    if paths.book.exists():
        status["contracts"] = json.loads(paths.book.read_text())["contracts"]
    return status


def start_local(port: int = DEFAULT_PORT, timeout: float = 30.0) -> dict[str, Any]:
    """Start the embedded Anvil on loopback (no-op when it already runs); state is loaded from and saved to disk."""
    paths = chain_paths()
    current = local_status()
    if current["running"]:
        return current
    paths.root.mkdir(parents=True, exist_ok=True)
    if not port_free("127.0.0.1", port):
        raise ChainError(f"port {port} on 127.0.0.1 is already in use; choose another with --port")
    url = f"http://127.0.0.1:{port}"
    args = [
        str(anvil_binary()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(CHAIN_ID),
        "--state",
        str(paths.state),
        "--state-interval",
        str(STATE_INTERVAL_S),
    ]
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    paths.pid.write_text(f"{proc.pid} {url}\n")
    deadline = time.monotonic() + timeout
    while True:
        try:
            rpc_call(url, "eth_chainId", timeout=0.5)
            break
        except ChainError:
            if proc.poll() is not None:
                tail = paths.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ChainError(f"Anvil exited at start (code {proc.returncode}): {tail[0]}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise ChainError(f"Anvil did not answer at {url} within {timeout:.0f} s; see {paths.log}") from None
            time.sleep(0.1)
    from chain.deploy import ensure_deployed

    ensure_deployed(url)
    return local_status()


def stop_local(timeout: float = 20.0) -> bool:
    """Stop the embedded node (it writes its state on the way out); False when it was not running."""
    paths = chain_paths()
    pid = _read_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _read_pid(paths) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if _read_pid(paths) is not None:
        os.kill(pid, signal.SIGKILL)
    paths.pid.unlink(missing_ok=True)
    return True


__all__ = [
    "CHAIN_ID",
    "ChainPaths",
    "anvil_binary",
    "chain_paths",
    "local_status",
    "rpc_call",
    "start_local",
    "stop_local",
]
