"""The canvas is the editor, in a real browser (Playwright driving Debian's chromium) with real mouse events.

Blocks are dragged in from the canvas's own palette, clicked to open their settings, connected by drawing
from a handle to another; a refused connection offers the block that fits between; the wheel scrolls the
page and zooms only with Ctrl. What counts is what the page shows and what is saved in pipeline.yaml.
"""

from __future__ import annotations

import re
import uuid

import yaml
from playwright.sync_api import expect

FRAME = "iframe[title='builder.ui.canvas.canvas']"


def idle(page) -> None:
    """Wait until the page has taken every event the canvas sent and drawn the result: no script runs, nothing
    is stale, and the canvas has no event Python has not acknowledged."""
    page.wait_for_function(
        """frame => {
          const app = document.querySelector('[data-testid=stApp]');
          const root = document.querySelector(frame)?.contentDocument?.querySelector('.aib-root');
          return !!app && app.dataset.testScriptState === 'notRunning' && !document.querySelector('[data-stale=true]')
            && !!root && root.dataset.pending === '0';
        }""",
        arg=FRAME,
    )


def middle(box: dict) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press at `start`, move to `end` in small steps (as a hand does), release."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=15)
    page.mouse.up()


def saved(workspace) -> dict:
    return yaml.safe_load((workspace / "pipeline.yaml").read_text())


def node(frame, node_id: str):
    return frame.locator(f".react-flow__node[data-id='{node_id}']")


# How far the page is scrolled: Streamlit scrolls its main area (the canvas's first scrolling ancestor), not the
# window. And the canvas's zoom, from its viewport's transform.
SCROLL = """frame => {
  for (let el = document.querySelector(frame); el; el = el.parentElement) {
    const s = getComputedStyle(el).overflowY;
    if ((s === 'auto' || s === 'scroll') && el.scrollHeight > el.clientHeight) return el.scrollTop;
  }
  return window.scrollY;
}"""
ZOOM = r"""frame => {
  const t = document.querySelector(frame).contentDocument.querySelector('.react-flow__viewport').style.transform;
  return parseFloat(/scale\(([\d.]+)\)/.exec(t)[1]);
}"""


def test_the_canvas_is_the_editor(page, aib_home):
    name = f"canvas-{uuid.uuid4().hex[:6]}"
    page.goto(page.base)
    page.get_by_role("heading", name="Templates", exact=True).wait_for()
    page.get_by_role("link", name="Builder").click()
    page.get_by_role("textbox", name="Pipeline name").fill(name)
    page.get_by_role("button", name="Start an empty pipeline").click()
    frame = page.frame_locator(FRAME)
    pane = frame.locator(".react-flow__pane")
    frame.get_by_role("button", name="FAQ CSV").wait_for()
    idle(page)
    (workspace,) = (aib_home / "ui" / "workspaces").glob(f"{name}-*")

    # Dragged in from the palette: each block lands where it was dropped, and is saved.
    for node_id, label, (dx, dy) in (
        ("faq-csv", "FAQ CSV", (170, 150)),
        ("intent-classifier", "Intent classifier", (620, 150)),
    ):
        box = pane.bounding_box()
        drag(page, middle(frame.get_by_role("button", name=label).bounding_box()), (box["x"] + dx, box["y"] + dy))
        node(frame, node_id).wait_for()
        idle(page)
        # Where it was dropped on the canvas (the canvas itself may have moved down the page: a message above it).
        box, shown = pane.bounding_box(), node(frame, node_id).bounding_box()
        x, y = box["x"] + dx, box["y"] + dy
        assert shown["x"] <= x <= shown["x"] + shown["width"] and shown["y"] <= y <= shown["y"] + shown["height"]
        assert saved(workspace)["blocks"][node_id]["use"].startswith(f"chat.{node_id}@")

    # Handles big enough to hit.
    for handle in (
        node(frame, "faq-csv").locator(".react-flow__handle.source"),
        node(frame, "intent-classifier").locator(".react-flow__handle.target"),
    ):
        hb = handle.bounding_box()
        assert hb["width"] >= 14 and hb["height"] >= 14, hb

    # A click selects a block and opens its settings.
    selected = page.get_by_role("combobox", name="Selected block")
    expect(selected).to_have_value(re.compile(r"intent-classifier$"))  # the block just added
    node(frame, "faq-csv").locator(".aib-name").click()
    expect(selected).to_have_value(re.compile(r"faq-csv$"))
    idle(page)

    # A refused connection says why, and offers the block that fits between.
    source = node(frame, "faq-csv").locator(".react-flow__handle.source")
    target = node(frame, "intent-classifier").locator(".react-flow__handle.target")
    drag(page, middle(source.bounding_box()), middle(target.bounding_box()))
    page.get_by_text("Cannot connect faq-csv to intent-classifier").wait_for()
    page.get_by_text("A MiniLM encoder fits between them.").wait_for()
    assert not saved(workspace).get("edges")
    page.get_by_role("button", name="Insert MiniLM encoder").click()
    node(frame, "minilm-encoder").wait_for()
    idle(page)
    assert saved(workspace)["edges"] == [
        "faq-csv.examples -> minilm-encoder.examples",
        "minilm-encoder.features -> intent-classifier.features",
    ]

    # A click on a palette entry adds the block at a free spot; a good connection is drawn once it is saved.
    frame.get_by_role("button", name="API", exact=True).click()
    node(frame, "api").wait_for()
    idle(page)
    source = node(frame, "intent-classifier").locator(".react-flow__handle.source")
    target = node(frame, "api").locator(".react-flow__handle.target")
    drag(page, middle(source.bounding_box()), middle(target.bounding_box()))
    page.get_by_text(re.compile(r"connected intent-classifier\.model (->|→) api\.model")).wait_for()
    assert "intent-classifier.model -> api.model" in saved(workspace)["edges"]
    expect(frame.locator(".react-flow__edge")).to_have_count(3)
    idle(page)

    # The wheel scrolls the page over the canvas; Ctrl + wheel zooms the canvas instead.
    box = pane.bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 40)  # an empty corner of the canvas
    zoom, scroll = page.evaluate(ZOOM, FRAME), page.evaluate(SCROLL, FRAME)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    page.wait_for_function(f"f => ({ZOOM})(f) > {zoom}", arg=FRAME)
    assert page.evaluate(SCROLL, FRAME) == scroll  # Ctrl + wheel did not scroll the page
    zoom = page.evaluate(ZOOM, FRAME)
    page.mouse.wheel(0, 300)
    page.wait_for_function(f"f => ({SCROLL})(f) > {scroll}", arg=FRAME)
    assert page.evaluate(ZOOM, FRAME) == zoom  # the wheel alone did not zoom
