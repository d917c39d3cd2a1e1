"""`aib provider start --coordinator URL` (compute) and `aib provider serve --coordinator URL` (hosting services): a
provider on another machine, speaking only the provider protocol.

It signs in with its wallet, registers its offer through the coordinator API, pulls its leases' flow runs from its
tier's Prefect work pool (the credentials come from the coordinator after sign-in; runtime/fixed_worker.py runs
only the lease code for them, runtime/protocol/worker.py, never a deployment's own) and sends heartbeats with the
shards it holds. Stopping it (Ctrl-C, SIGTERM, `aib provider stop`)
preempts its leases first: their checkpoints are sent and they resume elsewhere.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

from builder.cli.base import _fail, err, out
from builder.money import format_aic


def run_protocol_agent(
    coordinator: str, *, tier: str | None, price_wei: int, name: str | None, slots: int, region: str,
    wallet: str | None, storage: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """Run the agent until stopped; its exit status. `tier` None: storage only; `storage` ({capacity_gb,
    price_gb_month_wei, price_gb_served_wei, port, listen, url}): this machine also holds sealed shards."""
    if tier is None:
        return _run_store_only(coordinator, name=name, region=region, wallet=wallet, storage=storage or {})
    from runtime.config import get_settings
    from runtime.protocol.client import BlobCache, Coordinator, CoordinatorError, agent_state_dir, write_agent_state
    from runtime.providers import OfferError, check_tier, detect_hardware

    key, address = _signing_key(coordinator, wallet)
    hw = detect_hardware()
    try:
        check_tier(tier, hw)
    except OfferError as exc:
        _fail(str(exc))
    coord = Coordinator(coordinator, key, say=_say)
    name = name or socket.gethostname()
    try:
        info = coord.call("GET", "/v1/auth/info")
        offer = coord.call("POST", "/v1/offers", json={"name": name, "tier": tier, "price_wei_per_s": price_wei,
                                                       "slots": slots, "region": region,
                                                       "hardware": hw.to_dict()})  # fmt: skip
        offer_id = offer["offer_id"]
        cache = BlobCache()
        coord.call("POST", f"/v1/offers/{offer_id}/heartbeat", json={"held": cache.held()})
    except CoordinatorError as exc:
        _fail(str(exc))
    home = get_settings().home
    write_agent_state({"coordinator": coordinator, "offer_id": offer_id, "wallet": address})
    pid_file = home / "providers" / f"{offer_id}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    from runtime.fixed_worker import FixedWorker, lease_command

    # The lease processes get this machine's own home and nothing else: no Prefect credentials, no database URL.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AIB_DATABASE"))}
    env.update({"AIB_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    worker = FixedWorker(pool=tier, queue=offer_id, name=offer_id, command=lease_command, slots=slots, env=env,
                         api_url=info["prefect_api_url"], auth_string=info["prefect_auth_string"],
                         logs=agent_state_dir() / "logs").start()  # fmt: skip
    asset = f"; offer asset #{offer['asset_id']}" if offer.get("asset_id") is not None else ""
    out.print(f"provider {offer_id} online at {coordinator}: tier {tier}, {format_aic(price_wei * 3600)} per "
              f"device-hour, wallet {address}{asset}, {hw.summary}. Ctrl-C or "
              f"`aib provider stop {offer_id}` stops it.", highlight=False, soft_wrap=True)  # fmt: skip

    store = _start_store(coord, name, region, storage) if storage else None

    def beat() -> None:
        try:
            coord.call("POST", f"/v1/offers/{offer_id}/heartbeat", json={"held": cache.held()})
        except CoordinatorError as exc:  # the coordinator refused (not merely unreachable: that is retried)
            err.print(f"error: {exc}", highlight=False)
        if store is not None:
            store.beat()

    try:
        code = heartbeat_until_stopped(worker, beat)
    finally:
        if store is not None:
            store.stop()
        worker.stop()  # no new leases
        preempted = _preempt_leases(agent_state_dir() / "leases")
        try:
            coord.call("POST", f"/v1/offers/{offer_id}/stop")
        except CoordinatorError as exc:
            err.print(f"warning: the coordinator was not told that this offer stopped: {exc}", highlight=False)
        pid_file.unlink(missing_ok=True)
        coord.close()
        out.print(f"provider {offer_id} stopped" + (f"; preempted {preempted} lease(s), which resume elsewhere"
                                                    if preempted else ""))  # fmt: skip
    return code


def _say(line: str) -> None:
    err.print(line, highlight=False, soft_wrap=True, markup=False)


def _signing_key(coordinator: str, wallet: str | None) -> tuple[bytes, str]:
    """This machine's provider key and its address (exit 2 when --coordinator is not a URL or --wallet is not the
    key's address)."""
    from runtime.config import private_home
    from runtime.protocol.client import key_address, provider_key
    from runtime.protocol.identity import AuthError, checksum_address

    if not coordinator.startswith(("http://", "https://")):
        _fail(f"--coordinator {coordinator!r} is not a URL (http://host:port, as `aib server start` shows it)")
    private_home()
    key = provider_key()
    address = key_address(key)
    if wallet is not None:
        try:
            wanted = checksum_address(wallet)
        except AuthError as exc:
            _fail(f"--wallet: {exc}")
        if wanted != address:
            _fail(f"--wallet {wanted}: the key here signs for {address}; set AIB_KEYSTORE to {wanted}'s keystore")
    return key, address


def run_host_agent(
    coordinator: str, *, listen: str, port: int, url: str | None, price_wei: int, name: str | None,
    wallet: str | None,
) -> int:  # fmt: skip
    """`aib provider serve`: host services for the coordinator's gateway until stopped; the exit status."""
    from runtime.protocol.client import BlobCache, Coordinator
    from runtime.protocol.host import HostServer
    from runtime.providers import detect_hardware

    key, address = _signing_key(coordinator, wallet)
    server, cache = HostServer(), BlobCache()
    coord = Coordinator(coordinator, key, say=_say)

    def sync(node: _Node, hostings: list[dict[str, Any]]) -> None:
        where = f"/v1/hosts/{node.id}/blobs"
        server.sync(hostings, lambda entry: coord.download(where, coord.wallet_token(), entry, cache), _say)

    node = _Node(coord, "hosts", server.app, listen=listen, port=port, url=url, port_option="--port",
                 body={"name": name or socket.gethostname(), "price_per_1k_calls_wei": price_wei,
                       "hardware": detect_hardware().to_dict()},
                 state=server.ready, field="ready", answer="hostings", sync=sync)  # fmt: skip
    out.print(f"host {node.id} online at {coordinator}: answers the gateway at {node.url} for "
              f"{format_aic(price_wei)} per 1k calls, wallet {address}. Ctrl-C stops it.",
              highlight=False, soft_wrap=True)  # fmt: skip
    node.beat()
    try:
        code = heartbeat_until_stopped(node, node.beat)
    finally:
        node.stop()
        coord.close()
        out.print(f"host {node.id} stopped")
    return code


class _Node:
    """A server of this machine (a host's or a store's) in a thread of its own, registered with the coordinator
    under /v1/`kind`: each beat reports `state()` as `field` and hands the coordinator's `answer` (what it must
    serve or hold) to `sync`, once more at once when that changed what it reports (the coordinator may send calls
    or leases to it)."""

    def __init__(self, coord: Any, kind: str, app: Any, *, listen: str, port: int, url: str | None, port_option: str,
                 body: dict[str, Any], state: Any, field: str, answer: str, sync: Any) -> None:  # fmt: skip
        import uvicorn

        from runtime.processes import port_free
        from runtime.protocol.client import CoordinatorError

        if not port_free(listen, port):
            _fail(f"port {port} on {listen} is already in use; choose another with {port_option}")
        self.coord, self.kind, self.state, self.field, self.answer, self.sync = coord, kind, state, field, answer, sync
        self.url = (url or f"http://{_address_towards(coord.url)}:{port}").rstrip("/")
        self.error = f"the {kind[:-1]}'s HTTP server stopped"
        self.server = uvicorn.Server(uvicorn.Config(app, host=listen, port=port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name=f"{kind[:-1]}-server", daemon=True)
        self.thread.start()
        try:
            self.id = coord.call("POST", f"/v1/{kind}", json={**body, "url": self.url})[f"{kind[:-1]}_id"]
        except CoordinatorError as exc:
            self.server.should_exit = True
            _fail(str(exc))

    def alive(self) -> bool:
        return self.thread.is_alive()

    def beat(self) -> None:
        """Heartbeat with what it reports; sync what the coordinator placed on it since."""
        from runtime.protocol.client import CoordinatorError

        try:
            for _ in range(2):
                before = self.state()
                placed = self.coord.call("POST", f"/v1/{self.kind}/{self.id}/heartbeat",
                                         json={self.field: before})[self.answer]  # fmt: skip
                self.sync(self, placed)
                if self.state() == before:
                    break
        except CoordinatorError as exc:
            err.print(f"error: {exc}", highlight=False)

    def stop(self) -> None:
        """Tell the coordinator it goes offline, then stop the server."""
        from runtime.protocol.client import CoordinatorError

        try:
            self.coord.call("POST", f"/v1/{self.kind}/{self.id}/stop")
        except CoordinatorError as exc:
            err.print(f"warning: the coordinator was not told that this {self.kind[:-1]} stopped: {exc}",
                      highlight=False)  # fmt: skip
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _start_store(coord: Any, name: str, region: str, storage: dict[str, Any]) -> _Node:
    """This machine's storage offer: its blob server, registered with the coordinator."""
    from runtime.protocol.store_node import StoreNode

    blobs = StoreNode()

    def sync(node: _Node, replicas: list[dict[str, Any]]) -> None:
        def fetch(digest: str, part: Any) -> bytes:
            return coord.fetch_sealed(f"/v1/stores/{node.id}/blobs/{digest}", coord.wallet_token(), digest, part)

        blobs.sync(replicas, fetch, _say)

    node = _Node(coord, "stores", blobs.app, listen=storage.get("listen", "0.0.0.0"),
                 port=int(storage.get("port", 8710)), url=storage.get("url"), port_option="--storage-port",
                 body={"name": name, "region": region, "capacity_gb": storage["capacity_gb"],
                       "price_gb_month_wei": storage["price_gb_month_wei"],
                       "price_gb_served_wei": storage.get("price_gb_served_wei", 0)},
                 state=blobs.held, field="held", answer="replicas", sync=sync)  # fmt: skip
    out.print(f"store {node.id} online at {coord.url}: {storage['capacity_gb']:g} GB for "
              f"{format_aic(storage['price_gb_month_wei'])} per GB-month, sends shards from {node.url}",
              highlight=False, soft_wrap=True)  # fmt: skip
    return node


def _run_store_only(coordinator: str, *, name: str | None, region: str, wallet: str | None,
                    storage: dict[str, Any]) -> int:  # fmt: skip
    """`aib provider start --coordinator URL --storage GB` without --tier: hold shards until stopped."""
    from runtime.protocol.client import Coordinator

    key, _address = _signing_key(coordinator, wallet)
    coord = Coordinator(coordinator, key, say=_say)
    store = _start_store(coord, name or socket.gethostname(), region, storage)
    store.beat()
    try:
        code = heartbeat_until_stopped(store, store.beat)
    finally:
        store.stop()
        coord.close()
        out.print(f"store {store.id} stopped")
    return code


def _address_towards(coordinator: str) -> str:
    """This machine's address on the route to the coordinator (where the gateway can reach it back)."""
    from urllib.parse import urlsplit

    parts = urlsplit(coordinator)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))  # UDP: nothing is sent
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def heartbeat_until_stopped(worker: Any, beat: Any) -> int:
    """Call `beat()` every few seconds until Ctrl-C or SIGTERM (0) or until the agent's worker stops (1, said)."""
    from runtime.providers import HEARTBEAT_SECONDS

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stop.wait(HEARTBEAT_SECONDS):
        if not worker.alive():
            err.print(f"error: the worker stopped: {worker.error}", highlight=False)
            return 1
        beat()
    return 0


def _preempt_leases(folder: Any, timeout: float = 120.0) -> int:
    """Stop every lease running here at once (SIGUSR1: its checkpoints are sent and it is released as preempted)
    and wait until each has ended; how many there were."""
    from runtime.processes import pid_alive

    pids = []
    for f in sorted(folder.glob("*.pid")) if folder.is_dir() else []:
        try:
            pid = int(f.read_text())
            os.kill(pid, signal.SIGUSR1)
            pids.append((f, pid))
        except (OSError, ValueError):
            f.unlink(missing_ok=True)
    count, deadline = len(pids), time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [(f, p) for f, p in pids if f.exists() and pid_alive(p)]
        time.sleep(0.2)
    return count
