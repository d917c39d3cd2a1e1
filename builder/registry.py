"""The block registry: one source of truth for which blocks exist, fed by the entry-point group."""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from builder.errors import BlockError
from builder.spec import Block, check_block

ENTRY_POINT_GROUP = "easy_ai_builder.blocks"
# Modules of the blocks shipped with the product; loaded even when the distribution's entry points
# are not installed (running from a source checkout).
BUILTIN_MODULES = (
    "blocks.chat",
    "blocks.compute",
    "blocks.service",
    "blocks.vision",
    "blocks.driving",
    "blocks.speech",
)

_BLOCKS: dict[tuple[str, str], type[Block]] = {}
_loaded = False
_loading = False
_LOCK = threading.RLock()


def register_block(cls: type[Block]) -> type[Block]:
    """Class decorator that checks a block's declaration and adds it to the registry."""
    problems = check_block(cls)
    if problems:
        raise BlockError(f"block class {cls.__name__} is declared wrongly: " + "; ".join(problems))
    key = (cls.id, cls.version)
    existing = _BLOCKS.get(key)
    if existing is not None and existing is not cls:
        if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise BlockError(f"block {cls.ref()} is registered twice ({existing.__module__} and {cls.__module__})")
    _BLOCKS[key] = cls
    return cls


def load_blocks() -> None:
    """Import the built-in block modules and every module published under the entry-point group."""
    global _loaded, _loading
    if _loaded:
        return
    # The workbench runs page scripts in several threads at once: without the lock a second thread would
    # see the registry half filled (seen in CI as "No block matches" and "unknown block 'compute.local'").
    with _LOCK:
        if _loaded or _loading:  # _loading: a block module asking for blocks while it is being imported
            return
        _loading = True
        try:
            seen = set()
            for name in BUILTIN_MODULES:
                importlib.import_module(name)
                seen.add(name)
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.value in seen:
                    continue
                try:
                    ep.load()
                except Exception as exc:  # a broken third-party package must not take the product down
                    raise BlockError(
                        f"the block package {ep.value!r} (entry point {ep.name!r}) failed to load: {exc}"
                    ) from exc
            _loaded = True
        finally:
            _loading = False


def all_blocks() -> list[type[Block]]:
    """Every registered block, sorted by id then version."""
    load_blocks()
    return sorted(_BLOCKS.values(), key=lambda c: (c.id, _version_key(c.version)))


def versions_of(block_id: str) -> list[str]:
    """The registered versions of `block_id`, oldest first."""
    load_blocks()
    return sorted((v for (i, v) in _BLOCKS if i == block_id), key=_version_key)


def get_block(block_id: str, version: str) -> type[Block]:
    """The block class for `block_id@version`; raises BlockError with a suggestion when unknown."""
    load_blocks()
    cls = _BLOCKS.get((block_id, version))
    if cls is not None:
        return cls
    raise BlockError(unknown_block_message(block_id, version))


def unknown_block_message(block_id: str, version: str) -> str:
    """One sentence saying why `block_id@version` is unknown, with a 'did you mean' when possible."""
    versions = versions_of(block_id)
    if versions:
        return f"block {block_id!r} has no version {version!r}; available: {', '.join(versions)}"
    ids = sorted({i for (i, _) in _BLOCKS})
    close = difflib.get_close_matches(block_id, ids, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; run `aib blocks list` to see the catalog"
    return f"unknown block {block_id!r}{hint}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


_PREDICTORS: dict[str, type] = {}


def register_predictor(type_name: str) -> Callable[[type], type]:
    """Class decorator: the predictor that serves bundles whose manifest says `type: type_name`."""

    def wrap(cls: type) -> type:
        _PREDICTORS[type_name] = cls
        return cls

    return wrap


def predictor_class(type_name: str) -> type | None:
    """The predictor registered for bundles of `type_name` (block packages are loaded first), or None."""
    load_blocks()
    return _PREDICTORS.get(type_name)


__all__ = [
    "ENTRY_POINT_GROUP",
    "all_blocks",
    "get_block",
    "load_blocks",
    "predictor_class",
    "register_block",
    "register_predictor",
    "unknown_block_message",
    "versions_of",
]
