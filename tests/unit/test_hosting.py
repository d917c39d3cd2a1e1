"""Service hosting's pure parts: the gateway's comparison of answers, items on the wire, bundles as one tar."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from builder.errors import BadItem
from runtime.protocol.gateway import same_answer
from runtime.protocol.host import pack_items, unpack_bundle, unpack_items
from runtime.protocol.hosting import bundle_bytes


def test_answers_are_the_same_within_tolerance_and_labels_exactly():
    a = {"label": "seven", "score": 0.9012, "probs": [0.1, 0.9]}
    assert same_answer(a, {"label": "seven", "score": 0.9015, "probs": [0.1004, 0.8996]})
    assert not same_answer(a, {"label": "one", "score": 0.9012, "probs": [0.1, 0.9]})  # another label
    assert not same_answer(a, {"label": "seven", "score": 0.95, "probs": [0.1, 0.9]})  # another score
    assert not same_answer(a, {"label": "seven", "score": 0.9012, "probs": [0.1]})  # another shape
    assert not same_answer(a, {"label": "seven", "score": 0.9012, "probs": [0.1, 0.9], "extra": 1})
    assert not same_answer({"intent": None}, {"intent": "refund"})
    assert not same_answer({"ok": True}, {"ok": 1})  # a bool is not a number here
    assert same_answer([1, 2.0], [1, 2.0000001])


def test_items_with_bytes_travel_as_json_and_back():
    items = [{"file": b"\x89PNG\x00\xff", "text": "hi"}, {"text": "again"}]
    wire = pack_items(items)
    assert unpack_items(json.loads(json.dumps(wire))) == items
    for bad in ("x", [1], [{"file": {"$bytes": "***"}}]):
        with pytest.raises(BadItem):
            unpack_items(bad)


def test_a_bundle_is_one_tar_with_the_same_hash_each_time_and_unpacks_only_inside_its_folder(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "sub").mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")
    (bundle / "sub" / "model.onnx").write_bytes(b"weights")
    first = bundle_bytes(bundle)
    (bundle / "manifest.json").touch()  # another mtime: the same bytes
    assert bundle_bytes(bundle) == first
    out = unpack_bundle(first, tmp_path / "hosted" / "svc")
    assert (out / "sub" / "model.onnx").read_bytes() == b"weights"

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.TarError):
        unpack_bundle(evil.getvalue(), tmp_path / "hosted" / "evil")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "hosted" / "escaped.txt").exists()
