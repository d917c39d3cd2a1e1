"""My pipelines: the pipelines a user made or opened in the workbench, kept in their workspace folders, each
reachable by its own address (`/builder?pipeline=<folder>`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.ui.actions import save, workspaces_dir
from builder.ui.draft import Draft, DraftError, from_yaml

WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")


@dataclass(frozen=True)
class SavedPipeline:
    """A pipeline kept in the user's workspaces, as the "My pipelines" list shows it."""

    workspace: str  # the folder's name: the pipeline's address in the workbench (?pipeline=…)
    name: str
    description: str
    blocks: int
    modified: float  # seconds since the epoch


def my_pipelines() -> list[SavedPipeline]:
    """Every pipeline the user made or opened in the workbench, the most recently changed first."""
    out = []
    root = workspaces_dir()
    for folder in root.iterdir() if root.is_dir() else ():
        path = folder / "pipeline.yaml"
        if not (WORKSPACE_NAME.match(folder.name) and path.is_file()):
            continue
        try:
            draft = from_yaml(path.read_text(encoding="utf-8"), folder)
        except (DraftError, OSError, UnicodeDecodeError):
            continue  # a file broken outside the workbench is not listed rather than breaking the list
        name = draft.data.get("name")
        out.append(
            SavedPipeline(
                folder.name,
                name if isinstance(name, str) and name.strip() else folder.name,
                str(draft.data.get("description") or "").strip(),
                len(draft.blocks) if isinstance(draft.data.get("blocks"), dict) else 0,
                path.stat().st_mtime,
            )
        )
    return sorted(out, key=lambda p: p.modified, reverse=True)


def open_saved(workspace: str) -> Draft:
    """The pipeline kept in workspace folder `workspace`; DraftError when there is none by that name.

    The name comes from the page's address, which anyone can type: only a plain folder name directly under
    the workspaces folder is accepted, never a path.
    """
    folder = workspaces_dir() / workspace
    if not WORKSPACE_NAME.match(workspace) or not (folder / "pipeline.yaml").is_file():
        raise DraftError(f"there is no saved pipeline called {workspace!r}; open one from My pipelines")
    try:
        text = (folder / "pipeline.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise DraftError(f"the saved pipeline {workspace!r} cannot be read (is its file UTF-8 text?)") from None
    return from_yaml(text, folder)


def rename(draft: Draft, name: str) -> None:
    """Give the pipeline a new name (its address does not change); DraftError for an empty name."""
    if not name.strip():
        raise DraftError("give the pipeline a name")
    draft.data["name"] = name.strip()
    save(draft)


__all__ = ["SavedPipeline", "my_pipelines", "open_saved", "rename"]
