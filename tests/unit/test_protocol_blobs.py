"""The artifact store and sealing: content-addressed blobs checked on the way in and out, resumable uploads,
AES-GCM sealed shards that do not open when altered."""

from __future__ import annotations

import hashlib
import os

import pytest

from runtime.protocol.blobs import BlobError, BlobStore, Staging, check_digest
from runtime.protocol.sealing import SealError, new_key, seal, unseal


def test_a_blob_is_stored_once_under_its_hash_and_read_back_whole_or_in_ranges(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = store.put_bytes(data)
    assert digest == hashlib.sha256(data).hexdigest() and store.has(digest) and store.size(digest) == len(data)
    assert store.put_bytes(data) == digest  # the same content: the same blob
    assert store.read(digest) == data and store.read(digest, 10, 20) == data[10:20]
    assert b"".join(store.stream(digest, 5)) == data[5:]


def test_a_blob_corrupted_in_the_store_is_refused_when_read(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    digest = store.put_bytes(b"checkpoint bytes")
    (tmp_path / "blobs" / digest[:2] / digest).write_bytes(b"checkpoint bytez")
    with pytest.raises(BlobError, match="is corrupt in the store"):
        store.read(digest)


def test_a_file_enters_the_store_only_when_its_bytes_hash_to_the_announced_digest(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    f = tmp_path / "upload"
    f.write_bytes(b"what the provider sent")
    with pytest.raises(BlobError, match="not to the announced"):
        store.put_file(f, "0" * 64)
    assert not store.has("0" * 64)
    store.put_file(f, hashlib.sha256(b"what the provider sent").hexdigest())
    assert store.read(hashlib.sha256(b"what the provider sent").hexdigest()) == b"what the provider sent"


def test_digests_that_could_walk_out_of_the_store_are_refused():
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x", ""):
        with pytest.raises(BlobError, match="is not a sha256 digest"):
            check_digest(bad)


def test_an_upload_resumes_at_the_byte_it_stands_at_and_never_elsewhere(tmp_path):
    staging = Staging(tmp_path / "uploads")
    digest = "a" * 64
    assert staging.append("lease-1", digest, 0, b"hello ", limit=100) == 6
    with pytest.raises(BlobError, match="stands at byte 6; resume from there, not from 0"):
        staging.append("lease-1", digest, 0, b"hello ", limit=100)  # a retried chunk is not written twice
    assert staging.append("lease-1", digest, 6, b"world", limit=100) == 11
    assert staging.path("lease-1", digest).read_bytes() == b"hello world"
    with pytest.raises(BlobError, match="would pass 12 bytes"):
        staging.append("lease-1", digest, 11, b"!!", limit=12)


def test_a_sealed_shard_opens_only_with_its_key_unaltered_and_under_its_own_name():
    key, plain = new_key(), os.urandom(4096)
    label = hashlib.sha256(plain).hexdigest()
    sealed = seal(plain, key, label)
    assert plain not in sealed and unseal(sealed, key, label) == plain
    flipped = bytearray(sealed)
    flipped[40] ^= 1
    for bad_sealed, bad_key, bad_label in ((bytes(flipped), key, label), (sealed, new_key(), label),
                                           (sealed, key, "b" * 64), (sealed[:30], key, label)):  # fmt: skip
        with pytest.raises(SealError):
            unseal(bad_sealed, bad_key, bad_label)
    assert seal(plain, key, label) != sealed  # a fresh nonce each time
