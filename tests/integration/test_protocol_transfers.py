"""Transfers between a provider and the coordinator over a network that cuts: the real coordinator API (uvicorn on
a socket) behind a relay that drops the connection part-way; the provider's client resumes where it stopped."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from eth_account import Account

from runtime.protocol.api import create_app
from runtime.protocol.client import BlobCache, Coordinator
from tests.conftest import free_port
from tests.security.test_provider_protocol import make_lease, stored


@contextmanager
def coordinator_api() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the coordinator API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class CuttingRelay:
    """A TCP relay to `target` that cuts the first connection after `cut_after` bytes have gone through it (either
    way), like a network that drops mid-transfer; later connections pass whole. Counts the bytes relayed each way."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port, self.cut_after = target_port, cut_after
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.upstream_bytes = 0
        self.downstream_bytes = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                budget = self.cut_after if self.connections == 1 else None
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"left": budget}
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up, state, (client, upstream)), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool, state: dict, both: tuple) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    if state["left"] is not None:
                        if state["left"] <= 0:
                            raise OSError("cut")
                        data = data[: state["left"]]
                        state["left"] -= len(data)
                    if up:
                        self.upstream_bytes += len(data)
                    else:
                        self.downstream_bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in both:  # a cut closes both ends at once, as a dropped link does
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def claimed_lease(url: str, acct) -> tuple[Coordinator, object, str, dict]:
    coord = Coordinator(url, bytes(acct.key), say=lambda line: None)
    offer = coord.call("POST", "/v1/offers", json={"name": f"cut-{os.getpid()}", "tier": "cpu",
                                                    "price_wei_per_s": 10, "hardware": {"cpu_cores": 1}})  # fmt: skip
    lease = make_lease(offer["offer_id"], secret=os.urandom(6 * 1024 * 1024))
    got = coord.call("POST", f"/v1/leases/{lease.id}/claim", json={})
    return coord, lease, got["token"], got["job"]


def test_an_upload_cut_mid_way_resumes_from_the_last_whole_chunk_not_from_the_start(tmp_path):
    acct = Account.create()
    with coordinator_api() as url:
        port = int(url.rsplit(":", 1)[1])
        _, lease, token, _ = claimed_lease(url, acct)
        relay = CuttingRelay(port, cut_after=6 * 1024 * 1024)  # inside the second 4 MB chunk
        try:
            coord = Coordinator(f"http://127.0.0.1:{relay.port}", bytes(acct.key), say=lambda line: None)
            data = os.urandom(10 * 1024 * 1024)
            digest = coord.upload(lease.id, token, "epoch-1.pt", data)
        finally:
            relay.close()
        assert digest == hashlib.sha256(data).hexdigest() and digest in stored(lease.id).uploads
        assert relay.connections >= 2  # it was cut, and came back
        # Resumed: what went upstream is the 10 MB plus the part of the chunk lost in the cut, not 16 MB.
        assert relay.upstream_bytes < len(data) + 4 * 1024 * 1024 + 64 * 1024, relay.upstream_bytes


def test_a_download_cut_mid_way_resumes_from_the_bytes_already_here(tmp_path):
    acct = Account.create()
    with coordinator_api() as url:
        port = int(url.rsplit(":", 1)[1])
        _, lease, token, job = claimed_lease(url, acct)
        relay = CuttingRelay(port, cut_after=2 * 1024 * 1024)
        try:
            coord = Coordinator(f"http://127.0.0.1:{relay.port}", bytes(acct.key), say=lambda line: None)
            where = f"/v1/leases/{lease.id}/blobs"
            plain = coord.download(where, token, job["inputs"]["x"], BlobCache(tmp_path / "cache"))
        finally:
            relay.close()
        entry = job["inputs"]["x"]
        assert hashlib.sha256(plain).hexdigest() == entry["sha256"] and relay.connections >= 2
        # Resumed with a Range from what had arrived: the sealed blob crossed the link about once, not twice.
        assert relay.downstream_bytes < len(plain) + 36 + 256 * 1024, relay.downstream_bytes
