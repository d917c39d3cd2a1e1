"""A user's labelled files, one sub-folder per label, as a folder or a .zip: what the image and audio folder
blocks share (listing with a zip-bomb guard, naming unreadable files, a stratified split)."""

from __future__ import annotations

import random
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from builder.errors import BadItem, DataError
from builder.files import sha256_file, sha256_tree
from builder.spec import Block, BlockParams

Entry = tuple[str, str, Callable[[], bytes]]  # (label, name inside the folder or zip, reader of its bytes)


def labelled_files(root: Path, suffixes: set[str], max_bytes: int) -> list[Entry]:
    """Every file with one of `suffixes` in a label sub-folder of `root` (a folder or a .zip of the same
    layout), sorted by name; DataError for an unreadable zip or a member larger than `max_bytes` unpacked."""
    found: list[Entry] = []
    if root.is_file() and root.suffix.lower() == ".zip":
        try:
            archive = zipfile.ZipFile(root)
        except zipfile.BadZipFile:
            raise DataError(f"{root.name} is not a readable zip file") from None
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or parts[-1].startswith(".") or "__MACOSX" in parts:
                continue
            if PurePosixPath(info.filename).suffix.lower() in suffixes and len(parts) >= 2:
                if info.file_size > max_bytes:  # a zip bomb must not be inflated into memory
                    size, name = info.file_size, info.filename
                    raise DataError(f"{name} in {root.name} is {size} bytes unpacked; the limit is {max_bytes}")
                found.append((parts[-2], info.filename, _member_reader(archive, info.filename, root.name)))
        return sorted(found, key=lambda e: e[1])
    if not root.is_dir():
        raise DataError(f"{root} is neither a folder nor a .zip file")
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stat().st_size > max_bytes:
                raise DataError(f"{path.relative_to(root)} is {path.stat().st_size} bytes; the limit is {max_bytes}")
            found.append((path.parent.name, str(path.relative_to(root)), path.read_bytes))
    return sorted(found, key=lambda e: e[1])


def _member_reader(archive: zipfile.ZipFile, name: str, zip_name: str) -> Callable[[], bytes]:
    """A reader of one zip member that turns a damaged member (bad CRC, truncated, unsupported compression or
    encrypted) into BadItem, so the file is named among the unusable ones instead of ending the step."""

    def read() -> bytes:
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
            raise BadItem(f"it cannot be unpacked from {zip_name} (damaged, encrypted or unsupported)") from None

    return read


def refuse_bad_files(bad: list[tuple[str, str]], what: str) -> None:
    """DataError naming the files that could not be read (and why, for the first), or nothing when none."""
    if not bad:
        return
    names = ", ".join(name for name, _ in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise DataError(f"{len(bad)} file(s) cannot be used as {what}: {names}{more} ({bad[0][1]}); remove or replace them")


def check_labels(classes: list[str], name: str, what: str) -> None:
    """DataError unless there are at least two labels with at least two files each."""
    counts = {c: classes.count(c) for c in sorted(set(classes))}
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise DataError(f"{name} has one label ({only}); give at least two label sub-folders")
    few = [c for c, n in counts.items() if n < 2]
    if few:
        raise DataError(f"label {few[0]} has only one {what}; give at least 2 per label")


def stratified_split(classes: list[str], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the train and test items: each label's share held out, the same for the same seed."""
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(set(classes)):
        members = [i for i, c in enumerate(classes) if c == label]
        rng.shuffle(members)
        cut = max(1, round(len(members) * test_fraction))
        test += members[:cut]
        train += members[cut:]
    return sorted(train), sorted(test)


def content_fingerprint(root: Path) -> str:
    """sha256 of a .zip file or of a folder's files ("missing" when neither exists)."""
    if root.is_file():
        return sha256_file(root)
    return sha256_tree(root) if root.is_dir() else "missing"


class LabelledFolderBlock(Block):
    """A data block reading a user's folder or .zip of labelled files (its params have `path`): the folder is
    resolved against the pipeline, checked by reading it, and fingerprinted by content."""

    upload_types = (".zip",)  # the workbench uploads a folder as a zip
    file_suffixes: frozenset[str] = frozenset()  # the example files it reads
    max_file_bytes = 0  # the largest example file, unpacked
    example = "file"  # what one example is called

    def listing(self, params: Any, base_dir: Path) -> list[tuple[str, str]]:
        """(label, name) of every example file, as a run names them, without decoding any."""
        return [
            (label, name)
            for label, name, _read in labelled_files(
                self._root(params, base_dir), set(self.file_suffixes), self.max_file_bytes
            )
        ]

    @staticmethod
    def _root(params: Any, base_dir: Path) -> Path:
        p = Path(params.path)
        return p if p.is_absolute() else base_dir / p

    def _read(self, params: Any, base_dir: Path) -> Any:
        """Every item with its label and name; DataError naming what cannot be used."""
        raise NotImplementedError

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        try:
            self._read(params, base_dir)
        except DataError as exc:
            return [("path", str(exc))]
        return []

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        return content_fingerprint(self._root(params, base_dir))


__all__ = [
    "LabelledFolderBlock",
    "check_labels",
    "content_fingerprint",
    "labelled_files",
    "refuse_bad_files",
    "stratified_split",
]
