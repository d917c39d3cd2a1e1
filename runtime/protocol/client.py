"""The provider's side of the protocol: sign in with its wallet, call the coordinator with back-off, download sealed
blobs into a cache keyed by content hash (fetched once, reused by later leases), resume cut transfers.

Nothing here touches the coordinator's database or files: the provider has its own AIB_HOME (cache, work folders,
its key) and the coordinator's URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from builder.errors import AibError
from runtime.config import get_settings
from runtime.protocol.identity import sign_message
from runtime.protocol.sealing import unseal

UPLOAD_CHUNK = 4 << 20
RETRY_FOREVER = float("inf")


class CoordinatorError(AibError):
    """The coordinator refused a request (its sentence) or could not be reached in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def provider_key() -> bytes:
    """This provider's private key: the AIB_KEYSTORE account when set, else a key kept in its own AIB_HOME."""
    from chain.accounts import keystore_path, load_account

    path = keystore_path()
    if path is not None:
        return bytes(load_account(path).key)
    from runtime.config import local_secret

    return local_secret("provider-wallet")


def key_address(key: bytes) -> str:
    """The wallet address of a private key."""
    from eth_account import Account

    return Account.from_key(key).address


class Coordinator:
    """An HTTP client of the coordinator API for one wallet, re-signing in when its token runs out."""

    def __init__(self, url: str, key: bytes, say: Callable[[str], None] | None = None, patience: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.wallet = key_address(key)
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.patience = patience  # seconds to keep retrying an unreachable coordinator
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(60.0, connect=5.0))
        self.token: str | None = None
        self.expires = 0.0
        self.bytes_downloaded = 0

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, method: str, path: str, *, token: str | None = None, retry: bool = True, **kw: Any) -> Any:
        """Call the API; its JSON (or the response for raw bodies). Unreachable: retried with back-off (one line
        said per wait) for `patience` seconds; a refusal: CoordinatorError with the coordinator's sentence."""
        delay, deadline, said = 0.5, time.monotonic() + self.patience, False
        while True:
            headers = dict(kw.pop("headers", {}) or {})
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            try:
                r = self.http.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                if not retry or time.monotonic() + delay > deadline:
                    raise CoordinatorError(f"the coordinator at {self.url} cannot be reached: {exc}") from None
                if not said:
                    self.say(f"the coordinator at {self.url} is unreachable ({type(exc).__name__}); retrying")
                    said = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                kw["headers"] = headers
                continue
            if said:
                self.say(f"the coordinator at {self.url} answers again")
            if r.status_code >= 400:
                try:
                    message = r.json().get("error") or r.text
                except ValueError:
                    message = r.text
                raise CoordinatorError(f"the coordinator refused {method} {path}: {message}", r.status_code)
            return r

    def sign_in(self) -> str:
        """A fresh wallet token (challenge signed with this provider's key)."""
        ch = self.request("POST", "/v1/auth/challenge", json={"wallet": self.wallet}).json()
        signature = sign_message(ch["message"], self.key)
        got = self.request("POST", "/v1/auth/token", json={"nonce": ch["nonce"], "signature": signature}).json()
        self.token, self.expires = got["token"], float(got["expires_at"])
        return self.token

    def wallet_token(self) -> str:
        """The wallet token, renewed a minute before it expires."""
        if self.token is None or time.time() > self.expires - 60:
            self.sign_in()
        assert self.token is not None
        return self.token

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """A call with the wallet token; its JSON."""
        return self.request(method, path, token=self.wallet_token(), **kw).json()

    def download(self, where: str, token: str, entry: dict[str, Any], cache: BlobCache) -> bytes:
        """The plaintext of a sealed blob under the route `where` (a lease's or a host's `…/blobs`): from the local
        cache when held (no byte fetched); else from the store the job names as its `source` (a storage provider
        nearby), else from the coordinator (resuming a cut transfer from the bytes already here); opened with its
        key, checked and cached."""
        found = cache.get(entry["sha256"])
        if found is not None:
            return found
        sealed = None
        source = entry.get("source")
        if source:
            try:  # a store is a stranger too: no token is sent to it, and what it sends is checked by hash
                sealed = self.fetch_sealed(f"{source['url']}/blobs/{entry['sealed_sha256']}", None,
                                           entry["sealed_sha256"], cache.partial(entry["sealed_sha256"]),
                                           cut_retries=1)  # fmt: skip
            except CoordinatorError as exc:
                self.say(f"store {source.get('store_id')} did not send {entry['sealed_sha256'][:12]}… ({exc}); "
                         "fetching it from the coordinator")  # fmt: skip
                cache.partial(entry["sealed_sha256"]).unlink(missing_ok=True)
        if sealed is None:
            sealed = self.fetch_sealed(f"{where}/{entry['sealed_sha256']}", token, entry["sealed_sha256"],
                                       cache.partial(entry["sealed_sha256"]))  # fmt: skip
        plain = unseal(sealed, bytes.fromhex(entry["key"]), entry["sha256"])
        if hashlib.sha256(plain).hexdigest() != entry["sha256"]:
            raise CoordinatorError(f"input {entry['sha256'][:12]}… does not match its hash once opened")
        cache.put(entry["sha256"], plain)
        return plain

    def fetch_sealed(self, url: str, token: str | None, digest: str, part: Path, cut_retries: int = 30) -> bytes:
        """The bytes at `url` (a route of the coordinator, or a store's absolute URL), resuming into `part` after a
        cut; they must hash to `digest` (CoordinatorError otherwise, or when refused)."""
        cuts = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            try:
                with self.http.stream("GET", url, headers=headers) as r:
                    if r.status_code >= 400:
                        r.read()
                        try:
                            message = r.json().get("error", r.text)
                        except ValueError:
                            message = r.text[:200]
                        raise CoordinatorError(f"blob {digest[:12]}… was refused: {message}", r.status_code)
                    if have and r.status_code != 206:  # the server ignored the range: start again
                        part.unlink(missing_ok=True)
                    with open(part, "ab") as f:
                        for chunk in r.iter_bytes():
                            f.write(chunk)
                            self.bytes_downloaded += len(chunk)
                break
            except httpx.TransportError as exc:  # cut mid-transfer: resume from what arrived
                cuts += 1
                if cuts > cut_retries:
                    raise CoordinatorError(f"blob {digest[:12]}… could not be fetched ({type(exc).__name__})") from None
                self.say(f"download of {digest[:12]}… cut ({type(exc).__name__}); resuming")
                time.sleep(1.0)
        sealed = part.read_bytes()
        part.unlink(missing_ok=True)
        if hashlib.sha256(sealed).hexdigest() != digest:
            raise CoordinatorError(f"blob {digest[:12]}… arrived altered (its hash differs)")
        return sealed

    def upload(self, lease_id: str, token: str, name: str, data: bytes) -> str:
        """Send `data` as blob sha256(data) for the lease, in chunks, resuming from what already arrived; its hash."""
        digest = hashlib.sha256(data).hexdigest()
        path = f"/v1/leases/{lease_id}/uploads/{digest}"
        while True:
            status = self.request("GET", path, token=token).json()
            if status["stored"]:
                return digest
            offset = int(status["received"])
            try:
                while offset < len(data):
                    chunk = data[offset : offset + UPLOAD_CHUNK]
                    got = self.request("PUT", path, token=token, retry=False, content=chunk,
                                       params={"offset": offset, "size": len(data), "name": name}).json()  # fmt: skip
                    offset = int(got["received"])
                    if got["stored"]:
                        return digest
            except CoordinatorError as exc:
                if exc.status is not None:
                    raise
                self.say(f"upload of {name} cut at byte {offset}; resuming")
                time.sleep(1.0)


class BlobCache:
    """The provider's cache of lease inputs, keyed by their plaintext sha256 (checked when read)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or get_settings().cache_dir / "provider-blobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def get(self, digest: str) -> bytes | None:
        """The cached bytes of `digest`, or None (a corrupt entry is dropped)."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Keep `data` under its hash (atomically)."""
        from builder.files import atomic_write_bytes

        atomic_write_bytes(self._path(digest), data)

    def partial(self, sealed_digest: str) -> Path:
        """Where a download in progress is kept (resumed after a cut)."""
        folder = self.root / "partial"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / sealed_digest

    def held(self) -> list[str]:
        """The hashes held (reported to the coordinator for data locality)."""
        return sorted(p.name for p in self.root.glob("??/*") if len(p.name) == 64)


def agent_state_dir() -> Path:
    """The provider's own folder of agent state (its offer, tokens of its workers, lease processes)."""
    path = get_settings().home / "provider"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_agent_state(data: dict[str, Any]) -> None:
    """What the agent tells its lease processes (coordinator URL, offer id), 0600."""
    from builder.files import atomic_write_bytes

    path = agent_state_dir() / "agent.json"
    atomic_write_bytes(path, json.dumps(data).encode())
    os.chmod(path, 0o600)


def read_agent_state() -> dict[str, Any]:
    """The running agent's state; CoordinatorError when no agent runs here."""
    try:
        return json.loads((agent_state_dir() / "agent.json").read_text())
    except (OSError, ValueError):
        raise CoordinatorError(
            "no provider agent runs with this AIB_HOME; start one with `aib provider start`"
        ) from None


__all__ = ["BlobCache", "Coordinator", "CoordinatorError", "key_address", "provider_key", "read_agent_state",
           "write_agent_state"]  # fmt: skip
