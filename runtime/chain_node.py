"""The chain in use: the embedded Anvil node under AIB_HOME (state survives restarts), its address book, the RPC URL
and the wallet that signs. The runtime owns the processes it starts; `chain/` only talks to a node by URL."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import ChainError
from builder.files import atomic_write_bytes, exclusive_lock
from builder.registry import all_blocks
from chain.accounts import keystore_path, load_account, use_signer
from chain.client import connect, contract, rpc_call
from chain.client import send as send_from
from chain.deploy import (
    artifact_hash,
    deploy_contracts,
    deploy_escrow,
    deploy_rewards,
    register_block_asset,
    register_catalog,
)
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


@contextmanager
def sender_lock(address: str) -> Iterator[None]:
    """Held by whoever sends from `address` on this machine until the node has the transaction (see
    chain.client.send): several runs, settlements and agents may pay from one wallet at the same moment."""
    folder = get_settings().home / "chain" / "senders"
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / f"{address.lower()}.lock"):
        yield


def send(w3: Any, call: Any, sender: str) -> Any:
    """chain.client.send, one sender at a time per wallet on this machine."""
    return send_from(w3, call, sender, sender_lock)


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


def rpc_url() -> str:
    """AIB_RPC_URL when set (any EVM node), else the embedded node's URL."""
    url = os.environ.get("AIB_RPC_URL")
    if url:
        return url
    status = local_status()
    if not status["running"]:
        raise ChainError("the local chain is not running; start it with `aib chain start`")
    return status["rpc_url"]


def address_book_path() -> Path:
    """AIB_ADDRESS_BOOK (the deployment on another network) or the embedded chain's address book."""
    override = os.environ.get("AIB_ADDRESS_BOOK")
    if override:
        return Path(override).expanduser()
    return chain_paths().book


def address_book() -> dict[str, Any]:
    """The contracts, roles and block assets of the chain in use; ChainError when there is none."""
    path = address_book_path()
    if not path.exists():
        if os.environ.get("AIB_ADDRESS_BOOK"):
            raise ChainError(f"there is no address book at {path} (AIB_ADDRESS_BOOK)")
        raise ChainError("the local chain has not been started; run `aib chain start`")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ChainError(f"the address book {path} is not readable JSON") from None


def write_address_book(book: dict[str, Any]) -> None:
    """Replace the address book atomically."""
    atomic_write_bytes(address_book_path(), json.dumps(book, indent=2, sort_keys=True).encode())


def record_asset(ref: str, asset_id: int) -> None:
    """Name asset `asset_id` as `ref` (a block or dataset) in the address book, re-read first so that assets
    added meanwhile by another writer are kept (under a lock: two offers registered at the same moment by the
    coordinator API each keep their name)."""
    path = address_book_path()
    with exclusive_lock(path.with_name(path.name + ".lock")):
        book = address_book()
        book.setdefault("assets", {})[ref] = asset_id
        write_address_book(book)


def payments_enabled() -> bool:
    """Runs are paid on chain unless AIB_PAYMENTS=off, when AIB_RPC_URL is set or the local chain runs."""
    if os.environ.get("AIB_PAYMENTS", "auto").lower() == "off":
        return False
    if os.environ.get("AIB_RPC_URL"):
        return True
    return bool(local_status()["running"])


def current_wallet() -> tuple[str, str]:
    """(address, where it comes from) of the wallet that pays and signs: AIB_KEYSTORE, else the local user's."""
    path = keystore_path()
    if path is not None:
        return load_account(path).address, f"keystore {path}"
    return address_book()["roles"]["operator"], "local chain dev account"


def ensure_deployed(url: str) -> dict[str, Any]:
    """Deploy once per chain state: reuse the address book while its contracts still have code."""
    w3 = connect(url)
    book_path = chain_paths().book
    if book_path.exists():
        book = json.loads(book_path.read_text())
        escrow = book["contracts"]["RunEscrow"]
        if book.get("chain_id") == w3.eth.chain_id and w3.eth.get_code(escrow):
            if "ContributionRewards" not in book["contracts"]:  # a chain deployed before rewards existed
                book["contracts"]["ContributionRewards"] = deploy_rewards(w3, book["contracts"], book["roles"])
                write_address_book(book)
            builds = book.setdefault("builds", {})
            for name, deploy in (("RunEscrow", deploy_escrow), ("ContributionRewards", deploy_rewards)):
                if builds.get(name) != artifact_hash(name):
                    # A contract of an older build (before escrow entries were keyed by payer, or receipts by
                    # offer) speaks another ABI: a new one takes over. What the old one holds stays there for its
                    # owners to take back (reclaim a deposit, withdraw a stake).
                    book.setdefault("retired", {}).setdefault(name, []).append(book["contracts"][name])
                    book["contracts"][name] = deploy(w3, book["contracts"], book["roles"])
                    builds[name] = artifact_hash(name)
                    write_address_book(book)
            return book
    book = deploy_contracts(w3, url)
    book["assets"] = register_catalog(w3, book["contracts"]["AssetRegistry"], book["roles"]["operator"], all_blocks())
    write_address_book(book)
    return book


def register_provided_block(block: Any, owner: str) -> tuple[int, str]:
    """Register an installed `block` as a new asset owned by `owner` on the chain in use and name it in the
    address book; (asset id, tx hash). From then on the block's revenue goes to that asset's owner."""
    w3 = connect(rpc_url())
    book = address_book()
    asset_id, receipt = register_block_asset(
        w3, contract(w3, "AssetRegistry", book), block, owner, use_signer(w3, book)
    )
    record_asset(block.ref(), asset_id)
    return asset_id, receipt.transactionHash.to_0x_hex()


__all__ = [
    "CHAIN_ID",
    "ChainPaths",
    "address_book",
    "address_book_path",
    "anvil_binary",
    "chain_paths",
    "current_wallet",
    "ensure_deployed",
    "local_status",
    "payments_enabled",
    "record_asset",
    "register_provided_block",
    "rpc_url",
    "start_local",
    "stop_local",
    "write_address_book",
]
