"""The coordinator API: the only way a provider on another machine talks to the app (started by `aib server start`
beside `prefect server`; OpenAPI at /docs).

Routers per resource: auth (wallet challenge → bearer token), offers (register, heartbeat, stop), leases (claim,
job, sealed blobs, uploads, heartbeat, commitments, release, complete), hosts (machines that serve services for the
gateway: register, heartbeat with the services they answer for, their sealed bundles, stop), stores (machines that
hold sealed shards: register, heartbeat with what they hold, the blobs placed on them, stop). Requests are pydantic
models that forbid unknown fields, so a provider cannot slip usage, prices or verification results into any of them;
the coordinator computes those itself. Every refusal is one sentence in `{"error": …}` with a 4xx status, and stores
nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from runtime.db import Challenge, Lease, ProviderRow, session_factory, utcnow
from runtime.protocol import hosting as H
from runtime.protocol import leases as L
from runtime.protocol import storage as S
from runtime.protocol.blobs import BlobError, BlobStore, Staging, check_digest
from runtime.protocol.identity import (
    CHALLENGE_LIFETIME,
    LEASE_TOKEN_SECONDS,
    WALLET_TOKEN_SECONDS,
    AuthError,
    Claims,
    challenge_message,
    checksum_address,
    mint_token,
    new_nonce,
    read_token,
    recover_signer,
)
from runtime.providers import Hardware, OfferError, heartbeat, mark_stopped, register_offer

MAX_POINTS = 20_000  # metric points a lease may report (display only)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChallengeIn(Strict):
    wallet: str = Field(description="The provider's wallet address (0x…)")


class TokenIn(Strict):
    nonce: str = Field(max_length=64)
    signature: str = Field(max_length=200, description="EIP-191 signature of the challenge message (0x…)")


class OfferIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    tier: str = Field(max_length=20)
    price_wei_per_s: int = Field(gt=0, description="AIC wei per device-second")
    slots: int = Field(1, ge=1, le=64)
    region: str = Field("", max_length=40)
    hardware: dict[str, Any] = Field(default_factory=dict)


class HeldIn(Strict):
    held: list[str] = Field(default_factory=list, max_length=100_000, description="sha256 of shards it holds")


class ClaimIn(Strict):
    pid: int | None = Field(None, description="The provider's process (shown only)")


class Point(Strict):
    name: str = Field(max_length=100)
    value: float
    step: int = 0


class LeaseBeatIn(Strict):
    done: float | None = None
    total: float | None = None
    description: str = Field("", max_length=200)
    points: list[Point] = Field(default_factory=list, max_length=5000)


class CommitmentsIn(Strict):
    commitments: list[str] = Field(max_length=1_000_000)


class ReleaseIn(Strict):
    reason: str = Field(min_length=1, max_length=500)
    kind: str = Field("released", pattern="^(preempted|released|failed)$")


class HostIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(
        max_length=300,
        pattern=r"^https?://[^/\s]+$",
        description="Where the gateway reaches it: http(s)://host:port, no path",
    )
    price_per_1k_calls_wei: int = Field(ge=0, description="AIC wei per 1k calls it answers")
    hardware: dict[str, Any] = Field(default_factory=dict)


class StoreIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(
        max_length=300,
        pattern=r"^https?://[^/\s]+$",
        description="Where its blobs are fetched: http(s)://host:port, no path",
    )
    region: str = Field("", max_length=40)
    capacity_gb: float = Field(gt=0, le=1_000_000)
    price_gb_month_wei: int = Field(ge=0, description="AIC wei per GB held for a month")
    price_gb_served_wei: int = Field(0, ge=0, description="AIC wei per GB a lease is sent from it")


class StoreBeatIn(Strict):
    held: list[str] = Field(default_factory=list, max_length=1_000_000, description="sealed sha256 of blobs held")


class ReadyIn(Strict):
    ready: list[str] = Field(default_factory=list, max_length=1000, description="Services loaded and answering")


def _db() -> Iterator[Session]:
    with session_factory()() as s:
        yield s


DB = Annotated[Session, Depends(_db)]


def _claims(authorization: Annotated[str | None, Header()] = None) -> Claims:
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("this route needs a bearer token: sign in with POST /v1/auth/challenge and /v1/auth/token")
    return read_token(authorization.removeprefix("Bearer ").strip())


def wallet_claims(claims: Annotated[Claims, Depends(_claims)]) -> Claims:
    """A wallet token (a lease token only reaches its own lease)."""
    if claims.scope != "wallet":
        raise AuthError("a lease token only reaches its own lease's routes; use the wallet token here")
    return claims


def lease_claims(claims: Annotated[Claims, Depends(_claims)]) -> Claims:
    """A lease token."""
    if claims.lease_id is None:
        raise AuthError("this route needs the lease token given when the lease was claimed")
    return claims


auth = APIRouter(prefix="/v1/auth", tags=["auth"])
offers = APIRouter(prefix="/v1/offers", tags=["offers"])
leases = APIRouter(prefix="/v1/leases", tags=["leases"])
hosts = APIRouter(prefix="/v1/hosts", tags=["hosts"])
stores = APIRouter(prefix="/v1/stores", tags=["stores"])


@auth.post("/challenge")
def challenge(body: ChallengeIn, request: Request, s: DB) -> dict[str, Any]:
    """A one-time message for the wallet to sign (valid five minutes)."""
    import time

    wallet = checksum_address(body.wallet)
    nonce, now = new_nonce(), int(time.time())
    message = challenge_message(str(request.base_url).rstrip("/"), wallet, nonce, now)
    s.add(Challenge(nonce=nonce, wallet=wallet, message=message, expires_at=utcnow() + CHALLENGE_LIFETIME))
    s.commit()
    return {"nonce": nonce, "message": message}


@auth.post("/token")
def token(body: TokenIn, s: DB) -> dict[str, Any]:
    """A wallet token for the signer of an unused, unexpired challenge."""
    row = s.get(Challenge, body.nonce)
    if row is None:
        raise AuthError("unknown challenge; ask for a new one")
    if row.used_at is not None:
        raise AuthError("this challenge was already used; a signature counts once (ask for a new challenge)")
    if row.expires_at < utcnow():
        raise AuthError("the challenge has expired; ask for a new one")
    signer = recover_signer(row.message, body.signature)
    if signer != row.wallet:
        raise AuthError(f"the challenge was signed by {signer}, not by {row.wallet}")
    row.used_at = utcnow()
    s.commit()
    value, expires = mint_token(row.wallet, "wallet", WALLET_TOKEN_SECONDS)
    return {"token": value, "expires_at": expires, "wallet": row.wallet}


@auth.get("/info")
def info(request: Request, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict[str, Any]:
    """What a signed-in provider needs to run a worker: the Prefect API (at the address the provider reached this
    coordinator on, unless AIB_PUBLIC_PREFECT_URL says otherwise) and its credentials."""
    from runtime.distributed import prefect_auth_string, server_info

    server = server_info() or {}
    url = os.environ.get("AIB_PUBLIC_PREFECT_URL")
    if not url and server.get("port"):
        url = f"http://{request.url.hostname}:{server['port']}/api"
    return {"wallet": claims.wallet, "prefect_api_url": url or server.get("api_url"),
            "prefect_auth_string": prefect_auth_string(),
            "lease_heartbeat_seconds": L.LEASE_HEARTBEAT_DEADLINE.total_seconds() / 3}  # fmt: skip


def _own_offer(s: Session, offer_id: str, claims: Claims) -> ProviderRow:
    row = s.get(ProviderRow, offer_id)
    if row is None or row.via != "api" or row.wallet != claims.wallet:
        raise L.LeaseError(f"there is no offer {offer_id} of this wallet", 404)
    return row


@offers.post("")
def register(body: OfferIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict[str, Any]:
    """Register (or renew) an offer owned by the signed-in wallet; online at its first heartbeat."""
    hw = body.hardware
    try:
        gpus = tuple((str(g.get("name", "?"))[:100], float(g.get("memory_gb", 0))) for g in hw.get("gpus", [])[:16])
        hardware = Hardware(gpus, int(hw.get("cpu_cores", 1)), float(hw.get("ram_gb", 0)))
    except (TypeError, ValueError, AttributeError):
        raise L.LeaseError("hardware: expected {gpus: [{name, memory_gb}], cpu_cores, ram_gb}", 422) from None
    try:
        row = register_offer(s, name=f"{body.name}", tier=body.tier, price_wei_per_s=body.price_wei_per_s,
                             hardware=hardware, slots=body.slots, region=body.region, status="starting",
                             owner=claims.wallet)  # fmt: skip
    except OfferError as exc:
        raise L.LeaseError(str(exc), 422) from None
    row.via, row.wallet = "api", claims.wallet
    s.commit()
    # Its compute-offer asset is registered when it is first placed on a paid run (runtime/protocol/remote.py), so
    # that signing in, which anyone may do, costs the coordinator no transaction.
    return {"offer_id": row.id, "asset_id": row.asset_id, "wallet": row.wallet}


@offers.post("/{offer_id}/heartbeat")
def offer_heartbeat(offer_id: str, body: HeldIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """The offer is alive; `held`: the shards it holds (data locality for the allocator)."""
    _own_offer(s, offer_id, claims)
    heartbeat(s, offer_id, [check_digest(h) for h in body.held])
    s.commit()
    return {"ok": True}


@offers.post("/{offer_id}/stop")
def offer_stop(offer_id: str, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """The offer goes offline: no new lease is placed on it."""
    _own_offer(s, offer_id, claims)
    mark_stopped(s, offer_id)
    s.commit()
    return {"ok": True}


@hosts.post("")
def host_register(body: HostIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict[str, Any]:
    """Register (or renew) a machine of the signed-in wallet that hosts services for the gateway."""
    hw = {k: v for k, v in body.hardware.items() if k in ("gpus", "cpu_cores", "ram_gb")}
    row = H.register_host(s, wallet=claims.wallet, name=body.name, url=body.url,
                          call_price_wei=body.price_per_1k_calls_wei, hardware=hw)  # fmt: skip
    s.commit()
    return {"host_id": row.id, "wallet": row.wallet, "heartbeat_seconds": H.HOST_HEARTBEAT_DEADLINE.seconds / 6}


@hosts.post("/{host_id}/heartbeat")
def host_heartbeat(host_id: str, body: ReadyIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """The host is alive and answers for `ready`; what it must host (bundle entries and the gateway's secrets)."""
    host = H.own_host(s, host_id, claims.wallet)
    hostings = H.beat(s, host, body.ready)
    s.commit()
    return {"hostings": hostings}


@hosts.get("/{host_id}/blobs/{digest}")
def host_blob(
    host_id: str, digest: str, s: DB, claims: Annotated[Claims, Depends(wallet_claims)],
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:  # fmt: skip
    """A sealed bundle of a service placed on this host (from a byte offset with `Range: bytes=N-`)."""
    host = H.own_host(s, host_id, claims.wallet)
    if check_digest(digest) not in H.readable(s, host):
        raise L.LeaseError(f"blob {digest} is not the bundle of a service placed on host {host_id}", 403)
    return _stream(digest, range_, lambda chunks: chunks)


@hosts.post("/{host_id}/stop")
def host_stop(host_id: str, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """The host goes offline: the gateway stops calling it."""
    H.own_host(s, host_id, claims.wallet).status = "stopped"
    s.commit()
    return {"ok": True}


@stores.post("")
def store_register(body: StoreIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict[str, Any]:
    """Register (or renew) a machine of the signed-in wallet that holds sealed shards."""
    row = S.register_store(s, wallet=claims.wallet, name=body.name, url=body.url, region=body.region,
                           capacity_bytes=int(body.capacity_gb * S.GB), price_gb_month_wei=body.price_gb_month_wei,
                           price_gb_served_wei=body.price_gb_served_wei)  # fmt: skip
    s.commit()
    return {"store_id": row.id, "wallet": row.wallet}


@stores.post("/{store_id}/heartbeat")
def store_heartbeat(store_id: str, body: StoreBeatIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """The store is alive and holds `held`; what it must hold (each sealed blob it lacks is fetched from here)."""
    store = S.own_store(s, store_id, claims.wallet)
    wanted = S.beat(s, store, [check_digest(h) for h in body.held])
    s.commit()
    return {"replicas": wanted}


@stores.get("/{store_id}/blobs/{digest}")
def store_blob(
    store_id: str, digest: str, s: DB, claims: Annotated[Claims, Depends(wallet_claims)],
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:  # fmt: skip
    """A sealed blob placed on this store (from a byte offset with `Range: bytes=N-`)."""
    store = S.own_store(s, store_id, claims.wallet)
    if check_digest(digest) not in S.readable(s, store):
        raise L.LeaseError(f"blob {digest} is not placed on store {store_id}", 403)
    return _stream(digest, range_, lambda chunks: chunks)


@stores.post("/{store_id}/stop")
def store_stop(store_id: str, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """The store goes offline: leases are no longer sent to it."""
    S.own_store(s, store_id, claims.wallet).status = "stopped"
    s.commit()
    return {"ok": True}


def _lease(s: Session, lease_id: str, claims: Claims) -> Lease:
    return L.owned_lease(s, lease_id, claims.wallet, lease_scope=claims.lease_id)


@leases.post("/{lease_id}/claim")
def claim(lease_id: str, body: ClaimIn, s: DB, claims: Annotated[Claims, Depends(wallet_claims)]) -> dict:
    """Take an offered lease: its job (inputs by hash with their keys) and a token for this lease alone."""
    lease = L.claim(s, _lease(s, lease_id, claims), body.pid)
    s.commit()
    value, expires = mint_token(claims.wallet, f"lease:{lease.id}", LEASE_TOKEN_SECONDS)
    return {"token": value, "expires_at": expires, "job": L.job_json(lease)}


@leases.get("/{lease_id}")
def job(lease_id: str, s: DB, claims: Annotated[Claims, Depends(lease_claims)]) -> dict:
    """The lease's job again (after a restart of the provider's process)."""
    lease = _lease(s, lease_id, claims)
    L.require_claimed(lease)
    return L.job_json(lease)


@leases.get("/{lease_id}/blobs/{digest}")
def blob(
    lease_id: str, digest: str, s: DB, claims: Annotated[Claims, Depends(lease_claims)],
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:  # fmt: skip
    """A sealed blob the lease's job names (from a byte offset with `Range: bytes=N-`, to resume a download)."""
    lease = _lease(s, lease_id, claims)
    L.require_claimed(lease)
    if check_digest(digest) not in L.readable(lease):
        raise L.LeaseError(f"blob {digest} is not an input of lease {lease_id}", 403)
    return _stream(digest, range_, lambda chunks: _counted(lease_id, digest, chunks))


def _stream(digest: str, range_: str | None, count: Any) -> Response:
    """The stored blob `digest`, whole or from the offset a `Range: bytes=N-` header names; `count` wraps its
    chunks (to count the bytes actually sent)."""
    store = BlobStore()
    total = store.size(digest)
    start = 0
    if range_:
        try:
            start = int(range_.removeprefix("bytes=").split("-")[0])
        except ValueError:
            raise L.LeaseError(f"unreadable Range header {range_[:40]!r}; use bytes=N-", 416) from None
        if not 0 <= start <= total:
            raise L.LeaseError(f"Range starts at {start}, past the blob's {total} bytes", 416)
    headers = {"Content-Length": str(total - start), "Accept-Ranges": "bytes"}
    if range_:
        headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
    chunks = count(store.stream(digest, start))
    return StreamingResponse(chunks, status_code=206 if range_ else 200, headers=headers,
                             media_type="application/octet-stream")  # fmt: skip


def _counted(lease_id: str, digest: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`chunks`, adding the bytes actually sent to the lease's count per blob (what the data transfer costs)."""
    sent = 0
    try:
        for chunk in chunks:
            yield chunk
            sent += len(chunk)
    finally:
        with session_factory().begin() as s:
            lease = s.get(Lease, lease_id)
            lease.served = {**(lease.served or {}), digest: (lease.served or {}).get(digest, 0) + sent}


@leases.get("/{lease_id}/uploads/{digest}")
def upload_status(lease_id: str, digest: str, s: DB, claims: Annotated[Claims, Depends(lease_claims)]) -> dict:
    """How many bytes of an upload have arrived (resume from there), or that it is stored."""
    lease = _lease(s, lease_id, claims)
    if check_digest(digest) in (lease.uploads or {}):
        return {"received": lease.uploads[digest]["size"], "stored": True}
    return {"received": Staging().received(lease_id, digest), "stored": False}


@leases.put("/{lease_id}/uploads/{digest}")
async def upload(
    lease_id: str, digest: str, request: Request, claims: Annotated[Claims, Depends(lease_claims)],
    offset: Annotated[int, Query(ge=0)], size: Annotated[int, Query(ge=1, le=L.MAX_UPLOAD_BYTES)],
    name: Annotated[str, Query(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")],
) -> dict:  # fmt: skip
    """Append a chunk of a checkpoint at `offset`; once `size` bytes are in, the bytes must hash to `digest` (the
    hash the provider committed to) or the whole upload is discarded."""
    check_digest(digest)
    data = await request.body()
    with session_factory()() as s:
        lease = _lease(s, lease_id, claims)
        L.require_claimed(lease)
        if digest in (lease.uploads or {}):
            return {"received": size, "stored": True}
    staging = Staging()
    received = staging.append(lease_id, digest, offset, data, size)
    if received < size:
        return {"received": received, "stored": False}
    try:
        BlobStore().put_file(staging.path(lease_id, digest), digest)
    except BlobError:
        staging.discard(lease_id, digest)
        raise
    with session_factory().begin() as s:
        lease = _lease(s, lease_id, claims)
        L.accept_upload(lease, digest, name, size)
    return {"received": size, "stored": True}


@leases.post("/{lease_id}/heartbeat")
def lease_heartbeat(lease_id: str, body: LeaseBeatIn, s: DB, claims: Annotated[Claims, Depends(lease_claims)]) -> dict:
    """The lease is alive (its token renewed); progress and metric points are shown on the run page only."""
    lease = _lease(s, lease_id, claims)
    points = list((lease.progress or {}).get("points", []))
    room = max(0, MAX_POINTS - len(points))
    points += [p.model_dump() for p in body.points[:room]]
    stop = L.beat(lease, {"done": body.done, "total": body.total, "description": body.description, "points": points})
    s.commit()
    value, expires = mint_token(claims.wallet, f"lease:{lease.id}", LEASE_TOKEN_SECONDS)
    return {"token": value, "expires_at": expires, "stop": stop}


@leases.post("/{lease_id}/commitments")
def commitments(lease_id: str, body: CommitmentsIn, s: DB, claims: Annotated[Claims, Depends(lease_claims)]) -> dict:
    """The checkpoint hashes the provider commits to so far (each checked against its upload at the end)."""
    lease = _lease(s, lease_id, claims)
    for h in body.commitments:
        if h:
            check_digest(h)
    L.record_commitments(lease, body.commitments)
    s.commit()
    return {"ok": True}


@leases.post("/{lease_id}/release")
def release(lease_id: str, body: ReleaseIn, s: DB, claims: Annotated[Claims, Depends(lease_claims)]) -> dict:
    """The provider gives the lease up (preempted, disk full, an error) with its reason; what it sent so far
    stays, and the step resumes elsewhere from the last checkpoint that arrived whole."""
    lease = _lease(s, lease_id, claims)
    L.require_claimed(lease)
    L.end(lease, body.kind, body.reason)
    s.commit()
    return {"ok": True, "status": lease.status}


@leases.post("/{lease_id}/complete")
def complete(lease_id: str, s: DB, claims: Annotated[Claims, Depends(lease_claims)]) -> dict:
    """The provider finished: accepted only when every segment is committed and each checkpoint arrived."""
    lease = _lease(s, lease_id, claims)
    L.complete(lease)
    s.commit()
    return {"ok": True, "status": lease.status}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _spot_checks(stop: threading.Event) -> None:
    """Spot-check a random replica held by a store every AIB_STORAGE_CHECK_SECONDS (default 30): a store is paid
    for holding only up to its last passed check (runtime/protocol/storage.py)."""
    import logging

    every = float(os.environ.get("AIB_STORAGE_CHECK_SECONDS", "30") or 30)
    while not stop.wait(every):
        try:
            with session_factory().begin() as s:
                for replica_id, why in S.check_some(s):
                    if why:
                        logging.getLogger("aib.storage").warning("replica %s failed its spot check: %s", replica_id,
                                                                 why)  # fmt: skip
        except Exception:  # a database hiccup: the next round checks again
            logging.getLogger("aib.storage").exception("spot check round failed")


@asynccontextmanager
async def _lifespan(app: FastAPI):
    stop = threading.Event()
    checker = threading.Thread(target=_spot_checks, args=(stop,), name="storage-spot-checks", daemon=True)
    checker.start()
    yield
    stop.set()
    checker.join(timeout=5)


def create_app() -> FastAPI:
    """The coordinator API application."""
    app = FastAPI(title="Easy AI Builder coordinator", version="1", lifespan=_lifespan,
                  description="The provider protocol: sign in with a wallet, take leases, send work back.")  # fmt: skip
    for router in (auth, offers, leases, hosts, stores):
        app.include_router(router)

    @app.get("/v1/health", tags=["health"])
    def health() -> dict:
        return {"ok": True}

    @app.exception_handler(AuthError)
    def _auth(_: Request, exc: AuthError) -> JSONResponse:
        return _error(401, str(exc))

    @app.exception_handler(L.LeaseError)
    def _lease_error(_: Request, exc: L.LeaseError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(BlobError)
    def _blob(_: Request, exc: BlobError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "extra_forbidden":
            return _error(422, f"{where}: the coordinator does not take this field from a provider")
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    return app


app = create_app()

__all__ = ["app", "create_app"]
