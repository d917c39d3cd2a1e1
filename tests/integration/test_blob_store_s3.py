"""The artifact store on an S3-compatible object store: moto's stand-alone S3 server here stands for the real one
(production uses a real object store: docs/operators.md). The same checks as the local store, and the coordinator
API serving a lease from it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import httpx
import pytest

from runtime.protocol.blobs import BlobError, BlobStore
from tests.conftest import free_port


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto's S3 server did not start"
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                            "AWS_DEFAULT_REGION")}  # fmt: skip
    os.environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": url,
                       "AWS_DEFAULT_REGION": "us-east-1"})  # fmt: skip
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("aib-blobs")
    try:
        yield fs
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_blobs_on_s3_are_content_addressed_and_checked_both_ways(s3, tmp_path):
    store = BlobStore("s3://aib-blobs/store")
    data = os.urandom(2 * 1024 * 1024 + 3)
    digest = store.put_bytes(data)
    assert s3.exists(f"aib-blobs/store/{digest[:2]}/{digest}")  # really in the bucket
    assert store.has(digest) and store.size(digest) == len(data) and store.read(digest) == data
    assert store.read(digest, 7, 70) == data[7:70] and b"".join(store.stream(digest, 1)) == data[1:]
    upload = tmp_path / "upload"
    upload.write_bytes(b"a checkpoint")
    with pytest.raises(BlobError, match="not to the announced"):
        store.put_file(upload, "1" * 64)
    assert not store.has("1" * 64)
    store.put_file(upload, hashlib.sha256(b"a checkpoint").hexdigest())
    assert store.read(hashlib.sha256(b"a checkpoint").hexdigest()) == b"a checkpoint"
    s3.pipe(f"aib-blobs/store/{digest[:2]}/{digest}", b"swapped by whoever runs the bucket")
    with pytest.raises(BlobError, match="is corrupt in the store"):
        BlobStore("s3://aib-blobs/store").read(digest)


def test_the_coordinator_serves_and_takes_a_lease_s_blobs_through_s3(s3, monkeypatch):
    from eth_account import Account
    from fastapi.testclient import TestClient

    from runtime.protocol.api import create_app
    from tests.security.test_provider_protocol import bearer, claim, make_lease, offer, sign_in, stored

    monkeypatch.setenv("AIB_BLOB_STORE", "s3://aib-blobs/coordinator")
    with TestClient(create_app()) as api:
        acct = Account.create()
        token = sign_in(api, acct)
        lease = make_lease(offer(api, token, "s3-user"))
        lease_token, job = claim(api, token, lease)
        sealed = job["inputs"]["x"]["sealed_sha256"]
        assert s3.exists(f"aib-blobs/coordinator/{sealed[:2]}/{sealed}")
        r = api.get(f"/v1/leases/{lease.id}/blobs/{sealed}", headers=bearer(lease_token))
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sealed
        state = b"state after segment 1"
        digest = hashlib.sha256(state).hexdigest()
        r = api.put(f"/v1/leases/{lease.id}/uploads/{digest}", headers=bearer(lease_token), content=state,
                    params={"offset": 0, "size": len(state), "name": "epoch-1.pt"})  # fmt: skip
        assert r.json() == {"received": len(state), "stored": True}
        assert s3.cat(f"aib-blobs/coordinator/{digest[:2]}/{digest}") == state
        assert digest in stored(lease.id).uploads
