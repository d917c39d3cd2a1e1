"""The digitized-data cache: shards keyed by (raw data hash, transform spec hash), checksummed on read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import shards
from runtime.shards import ShardStore, arrays_hash, spec_hash
from tests.conftest import all_at_once

SPEC = {"transform": "t", "version": 1, "n": 40}


@pytest.fixture()
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 1000)  # many shards from a small array


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"train": rng.normal(size=(50, 1, 4, 10)).astype(np.float32), "test": rng.normal(size=(7, 1, 4, 10))}


def test_arrays_are_stored_in_several_shards_and_read_back_exactly(tmp_path, small_shards):
    store = ShardStore(tmp_path)
    data = arrays()
    path = store.save("ab" * 32, SPEC, data)
    manifest = json.loads((path / "manifest.json").read_text())
    assert len(manifest["arrays"]["train"]["shards"]) > 3
    back = store.load("ab" * 32, SPEC)
    assert back is not None and set(back) == {"train", "test"}
    for name in data:
        assert back[name].dtype == data[name].dtype and np.array_equal(back[name], data[name])
    assert [e.path for e in store.entries()] == [path] and store.entries()[0].bytes > 0


def test_build_runs_once_then_the_shards_are_read(tmp_path):
    store = ShardStore(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return arrays()

    first, hit1 = store.get_or_build("cd" * 32, SPEC, build)
    second, hit2 = store.get_or_build("cd" * 32, SPEC, build)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert np.array_equal(first["train"], second["train"])


def test_a_changed_transform_param_builds_its_own_shards_and_leaves_the_others(tmp_path):
    store = ShardStore(tmp_path)
    raw = "ef" * 32
    store.save(raw, SPEC, arrays(0))
    other = {**SPEC, "n": 80}
    assert spec_hash(other) != spec_hash(SPEC)
    assert store.load(raw, other) is None  # not built yet
    store.save(raw, other, arrays(1))
    assert np.array_equal(store.load(raw, SPEC)["train"], arrays(0)["train"])  # untouched
    assert np.array_equal(store.load(raw, other)["train"], arrays(1)["train"])
    assert store.load("00" * 32, SPEC) is None  # other raw data: nothing


def test_a_corrupt_shard_is_detected_on_read_discarded_and_rebuilt(tmp_path, small_shards):
    store = ShardStore(tmp_path)
    raw = "12" * 32
    path = store.save(raw, SPEC, arrays())
    victim = sorted(path.glob("train-*.npy"))[2]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the payload: np.load would read it without complaint
    victim.write_bytes(bytes(data))
    assert store.load(raw, SPEC) is None and not path.exists()
    rebuilt, hit = store.get_or_build(raw, SPEC, arrays)
    assert not hit and np.array_equal(store.load(raw, SPEC)["train"], arrays()["train"])


def test_a_missing_shard_or_a_manifest_for_other_data_is_a_miss(tmp_path, small_shards):
    store = ShardStore(tmp_path)
    path = store.save("34" * 32, SPEC, arrays())
    sorted(path.glob("test-*.npy"))[0].unlink()
    assert store.load("34" * 32, SPEC) is None
    path = store.save("56" * 32, SPEC, arrays())
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["spec"] = {**SPEC, "n": 1}
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert store.load("56" * 32, SPEC) is None


def test_concurrent_writers_of_the_same_entry_leave_one_whole_entry(tmp_path, small_shards):
    for trial in range(20):  # the race is narrow: repeat it (the old code failed about one trial in ten)
        store = ShardStore(tmp_path / str(trial))
        outcomes = all_at_once(lambda store=store: store.save("78" * 32, SPEC, arrays()), 6)
        assert not [o for o in outcomes if isinstance(o, Exception)]
        assert np.array_equal(store.load("78" * 32, SPEC)["train"], arrays()["train"])
        assert not [p for p in (store.root / ("78" * 16)).iterdir() if p.name.startswith((".staging", ".trash"))]


def test_the_raw_hash_depends_on_values_shape_and_dtype():
    a = np.arange(12, dtype=np.float32)
    assert arrays_hash(a) == arrays_hash(a.copy())
    assert arrays_hash(a) != arrays_hash(a.reshape(3, 4))
    assert arrays_hash(a) != arrays_hash(a.astype(np.float64))
    b = a.copy()
    b[5] += 1
    assert arrays_hash(a) != arrays_hash(b)
