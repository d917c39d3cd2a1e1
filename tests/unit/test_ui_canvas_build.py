"""The canvas bundle committed under builder/ui/canvas_component/build/ was built from the sources as they are."""

import hashlib
from pathlib import Path

from builder.ui.canvas import BUILD_DIR

FRONTEND = BUILD_DIR.parent / "frontend"


def source_hash(root: Path) -> str:
    """The hash build.mjs records: each source's path then its bytes, in path order."""
    files = ["build.mjs", "package.json", "package-lock.json"]
    files += [p.relative_to(root).as_posix() for p in (root / "src").rglob("*") if p.is_file()]
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0".encode())
        h.update((root / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def test_committed_canvas_build_matches_its_sources():
    recorded = (BUILD_DIR / "SOURCES.sha256").read_text().strip()
    assert recorded == source_hash(FRONTEND), (
        "builder/ui/canvas_component/build is stale: run `make canvas` and commit the build folder"
    )


def test_the_build_holds_the_page_and_the_files_it_loads():
    page = (BUILD_DIR / "index.html").read_text()
    for name in ("canvas.js", "canvas.css"):
        assert f"./{name}" in page and (BUILD_DIR / name).stat().st_size > 0
