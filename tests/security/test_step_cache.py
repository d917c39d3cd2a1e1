"""Evidence from providers: a step-cache file planted in the shared folder must never run code here."""

from __future__ import annotations

import hashlib
import logging
import pickle

from runtime.store import StepCache


class Payload:
    """What an attacker pickles: un-pickling it calls `open(marker, "w")`, a stand-in for any command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(cache: StepCache, key: str, marker) -> None:
    """Write a malicious entry where a step's outputs live, with the checksum the cache used to check."""
    payload = pickle.dumps({"model": Payload(str(marker))})
    path = cache.root / key[:2] / f"{key}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(hashlib.sha256(payload).hexdigest().encode() + payload)


def test_a_planted_pickle_is_refused_with_one_sentence_and_nothing_runs(tmp_path, caplog):
    cache = StepCache(tmp_path / "steps")
    key = "ab" * 32
    marker = tmp_path / "pwned"
    plant(cache, key, marker)
    with caplog.at_level(logging.WARNING, logger="runtime.store"):
        assert cache.get(key) is None  # a cache miss: the step is computed again
    assert not marker.exists()  # nothing was un-pickled
    assert not (cache.root / key[:2] / f"{key}.pkl").exists()
    [record] = [r for r in caplog.records if r.name == "runtime.store"]
    assert record.getMessage() == (
        f"step cache entry {key} is not signed by this installation; it was removed and the step is computed again"
    )


def test_entries_written_here_are_read_back_and_a_flipped_byte_is_refused(tmp_path):
    cache = StepCache(tmp_path / "steps")
    cache.put("cd" * 32, {"metrics": {"accuracy": 0.9}})
    assert cache.get("cd" * 32) == {"metrics": {"accuracy": 0.9}}
    path = cache.root / "cd" / f"{'cd' * 32}.pkl"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    assert cache.get("cd" * 32) is None


def test_an_entry_moved_under_another_key_is_refused(tmp_path):
    """A provider may copy a genuine entry of one step over another's: the signature covers the key too."""
    cache = StepCache(tmp_path / "steps")
    cache.put("ef" * 32, {"metrics": {"accuracy": 0.1}})
    other = cache.root / "12" / f"{'12' * 32}.pkl"
    other.parent.mkdir(parents=True)
    other.write_bytes((cache.root / "ef" / f"{'ef' * 32}.pkl").read_bytes())
    assert cache.get("12" * 32) is None
