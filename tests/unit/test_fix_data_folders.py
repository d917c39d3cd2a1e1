"""Fixing a user's own images or recordings from a mistake (builder/ui/fix_data.py): a file is moved to its right
label, or more examples are added, always in a new version of the folder or zip (the old one untouched), checked by
the data block before the pipeline points at it; a stranger's path or label can reach nothing outside the data."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from builder.ui.draft import DraftError, from_yaml


def png(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def tree_sha(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


LAYOUT = {"cats": 3, "dogs": 3}


@pytest.fixture(params=["folder", "zip"])
def draft(request, tmp_path):
    """A workspace whose pipeline reads `photos/` (or `photos.zip`, one top folder inside, as people zip folders)."""
    workspace = tmp_path / "ws"
    data = workspace / "data"
    data.mkdir(parents=True)
    files = {f"{label}/{i}.png": png(hash((label, i)) % 1000) for label, n in LAYOUT.items() for i in range(n)}
    if request.param == "folder":
        for name, content in files.items():
            (data / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
            (data / "photos" / name).write_bytes(content)
        path = "data/photos"
    else:
        with zipfile.ZipFile(data / "photos.zip", "w") as z:
            for name, content in files.items():
                z.writestr(f"photos/{name}", content)
        path = "data/photos.zip"
    text = f"""schema_version: 1
name: pets
blocks:
  photos: {{use: vision.image-folder@1.0.0, params: {{path: {path}, size: 12, test_fraction: 0.34}}}}
  cnn: {{use: vision.small-cnn@1.0.0, params: {{epochs: 1}}}}
edges:
  - photos.images -> cnn.images
compute: compute.local@1.0.0
"""
    (workspace / "pipeline.yaml").write_text(text)
    return from_yaml(text, workspace)


def names_of(draft) -> dict[str, str]:
    from builder.ui.fix_data import _listing

    return {name: label for label, name in _listing(draft, "photos")}


def saved_path(draft) -> str:
    return from_yaml((draft.base_dir / "pipeline.yaml").read_text(), draft.base_dir).blocks["photos"]["params"]["path"]


def first(draft, label: str) -> str:
    return next(n for n, lab in sorted(names_of(draft).items()) if lab == label)


def test_a_file_moved_to_its_right_label_lands_in_a_new_version_and_the_old_one_is_untouched(draft):
    from builder.ui.fix_data import folder_labels, relabel

    old = draft.base_dir / saved_path(draft)
    before = tree_sha(old) if old.is_dir() else hashlib.sha256(old.read_bytes()).hexdigest()
    name = first(draft, "cats")
    fixed = relabel(draft, "photos", name, "dogs")
    assert (fixed.added, fixed.moved) == (0, 1)
    assert fixed.path.name in ("photos.v2", "photos.v2.zip")
    assert saved_path(draft) == f"data/{fixed.path.name}"  # the pipeline reads the new version, saved
    assert folder_labels(draft, "photos") == {"cats": 2, "dogs": 4}
    moved = names_of(draft)
    assert name not in moved and name.replace("cats/", "dogs/") in moved
    assert (tree_sha(old) if old.is_dir() else hashlib.sha256(old.read_bytes()).hexdigest()) == before
    # The moved file is the same bytes.
    again = relabel(draft, "photos", name.replace("cats/", "dogs/"), "cats")
    assert again.path.name in ("photos.v3", "photos.v3.zip")


def test_a_new_label_needs_a_second_example_and_is_then_added_never_dropped(draft):
    from builder.ui.fix_data import folder_labels, relabel

    name = first(draft, "cats")
    with pytest.raises(DraftError, match="birds is a new label: add at least one more image of it"):
        relabel(draft, "photos", name, "birds")
    fixed = relabel(draft, "photos", name, "birds", [("robin.png", png(7))])
    assert (fixed.added, fixed.moved) == (1, 1)
    assert folder_labels(draft, "photos") == {"birds": 2, "cats": 2, "dogs": 3}


def test_adding_examples_keeps_every_existing_file_and_never_overwrites_one(draft):
    from builder.ui.fix_data import add_examples, folder_labels

    existing = first(draft, "dogs").rsplit("/", 1)[1]
    fixed = add_examples(draft, "photos", "dogs", [(existing, png(11)), ("new dog.png", png(12))])
    assert fixed.added == 2
    names = names_of(draft)
    assert folder_labels(draft, "photos") == {"cats": 3, "dogs": 5}
    assert any(n.endswith("dogs/0-2.png") for n in names) and any(n.endswith("dogs/new_dog.png") for n in names)


def test_an_unreadable_upload_is_named_and_nothing_changes(draft):
    from builder.ui.fix_data import add_examples

    path, versions = saved_path(draft), sorted(p.name for p in (draft.base_dir / "data").iterdir())
    with pytest.raises(DraftError, match=r"notes\.png.*not a PNG or JPEG image"):
        add_examples(draft, "photos", "cats", [("notes.png", b"not an image at all")])
    with pytest.raises(DraftError, match="is not a"):
        add_examples(draft, "photos", "cats", [("notes.txt", b"hello")])
    assert saved_path(draft) == path
    assert sorted(p.name for p in (draft.base_dir / "data").iterdir()) == versions  # no half version left


def test_emptying_a_label_below_two_is_refused_by_the_block_and_nothing_changes(draft):
    from builder.ui.fix_data import relabel

    relabel(draft, "photos", first(draft, "cats"), "dogs")
    path = saved_path(draft)
    with pytest.raises(DraftError, match="label cats has only one image"):
        relabel(draft, "photos", first(draft, "cats"), "dogs")
    assert saved_path(draft) == path


@pytest.mark.parametrize("label", ["../../outside", ".hidden", "a/b", "", "x" * 65, "tab\there"])
def test_a_label_that_would_escape_or_hide_is_refused(draft, label):
    from builder.ui.fix_data import add_examples, relabel

    with pytest.raises(DraftError):
        relabel(draft, "photos", first(draft, "cats"), label, [("a.png", png(1))])
    with pytest.raises(DraftError):
        add_examples(draft, "photos", label, [("a.png", png(1))])
    assert not (draft.base_dir.parent / "outside").exists()


@pytest.mark.parametrize("name", ["../pipeline.yaml", "/etc/passwd", "cats/../../pipeline.yaml", "cats/nothere.png"])
def test_only_a_file_of_the_users_data_can_be_moved(draft, name):
    from builder.ui.fix_data import relabel

    pipeline = (draft.base_dir / "pipeline.yaml").read_bytes()
    with pytest.raises(DraftError, match="is not in photos"):
        relabel(draft, "photos", name, "dogs")
    assert (draft.base_dir / "pipeline.yaml").read_bytes() == pipeline


def test_the_run_names_each_held_out_file_so_a_mistake_can_be_traced(draft):
    from builder.registry import get_block

    block = get_block("vision.image-folder", "1.0.0")()
    params = block.Params(**draft.blocks["photos"]["params"])
    data = block.load(params, draft.base_dir)
    files = data.source["test_files"]
    assert len(files) == len(data.test_y)
    assert [data.labels[int(y)] for y in data.test_y] == [names_of(draft)[f] for f in files]


def test_a_recording_is_relabelled_and_added_the_same_way_and_each_held_out_clip_names_its_file(tmp_path):
    from blocks.speech.audio import encode_wav
    from builder.registry import get_block
    from builder.ui.fix_data import add_examples, example_word, folder_labels, relabel

    def tone(hz: float) -> bytes:
        t = np.arange(8000) / 16000
        return encode_wav((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))

    workspace = tmp_path / "ws"
    for label, hz in (("yes", 300), ("no", 600)):
        for i in range(3):
            (workspace / "data" / "words" / label).mkdir(parents=True, exist_ok=True)
            (workspace / "data" / "words" / label / f"{i}.wav").write_bytes(tone(hz + 10 * i))
    text = """schema_version: 1
name: words
blocks:
  words: {use: speech.wav-folder@1.0.0, params: {path: data/words, test_fraction: 0.34}}
compute: compute.local@1.0.0
"""
    (workspace / "pipeline.yaml").write_text(text)
    draft = from_yaml(text, workspace)
    assert example_word(draft, "words") == "recording"
    with pytest.raises(DraftError, match=r"cannot be used as recordings: yes/hum\.wav"):
        add_examples(draft, "words", "yes", [("hum.wav", b"RIFF not really a wave")])
    assert relabel(draft, "words", "yes/0.wav", "no").path.name == "words.v2"
    assert add_examples(draft, "words", "maybe", [("a.wav", tone(900)), ("b.wav", tone(950))]).added == 2
    assert folder_labels(draft, "words") == {"maybe": 2, "no": 4, "yes": 2}
    block = get_block("speech.wav-folder", "1.0.0")()
    data = block.load(block.Params(**draft.blocks["words"]["params"]), workspace)
    assert len(data.source["test_files"]) == len(data.test_y)
    assert all((workspace / "data" / "words.v3" / f).is_file() for f in data.source["test_files"])
