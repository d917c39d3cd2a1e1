"""The workbench in a real browser (Playwright driving Debian's chromium) against `aib ui` on a free port.

The canvas is a React Flow component inside an iframe: these tests drag its handles with the mouse, which
AppTest cannot do. Screenshots of each page of the journey are written to docs/img/ (used by the README).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"


# When the canvas component sent the page its last value (see canvas_quiet): it posts each one to the page.
RECORD_CANVAS_VALUES = """
if (window === window.top) {
  window.__canvasSent = 0;
  window.addEventListener('message', (e) => {
    if (e.data && e.data.type === 'streamlit:setComponentValue') window.__canvasSent = Date.now();
  });
}
"""


@pytest.fixture(scope="module")
def ui_url(prefect_api):
    from builder.cli.launch import start_ui, stop_ui

    proc, url = start_ui("127.0.0.1", free_port())
    yield url
    stop_ui(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, ui_url, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(RECORD_CANVAS_VALUES)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.base = ui_url
    yield pg
    pg.screenshot(path=str(tmp_path / "last.png"), full_page=True)  # what the page showed at the end (failures)
    print(f"last screenshot: {tmp_path / 'last.png'}")
    context.close()


def open_page(page, title: str) -> None:
    """Open a page from the sidebar, as a user does (the app is loaded once first)."""
    if "Templates" not in (page.title() or "") and page.url == "about:blank":
        page.goto(page.base)
        page.get_by_role("heading", name="Templates").wait_for()
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()


def use_template(page, name: str) -> None:
    """Press "Use this template" on the card of template `name` (every card has that button)."""
    card = page.locator("[data-testid='stVerticalBlock']").filter(
        has=page.get_by_role("heading", name=name, exact=True)
    )
    card.last.get_by_role("button", name="Use this template").click()  # the innermost block holding it: its card


def settled(page) -> None:
    """Wait until no script run is in progress and nothing on the page is stale.

    While a run redraws the page, an element can be replaced between the mouse press and release of a click,
    and the browser then delivers no click at all; a user sees the same and clicks again, a test must wait.
    """
    page.wait_for_function(
        "() => !!document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')"
        " && !document.querySelector('[data-stale=true]')"
    )


def add_from_palette(page, block_id: str) -> None:
    page.get_by_role("textbox", name="Search blocks").fill(block_id)
    page.get_by_role("textbox", name="Search blocks").press("Enter")
    expanders = page.locator("[data-testid='stSidebar'] [data-testid='stExpander']")
    expander = expanders.filter(has_text=re.compile(rf"{re.escape(block_id)} ·"))
    expander.wait_for()
    page.wait_for_function(  # the search has been applied: only matching blocks are listed
        "n => document.querySelectorAll('[data-testid=stSidebar] [data-testid=stExpander]').length === n",
        arg=1,
    )
    button = expander.get_by_role("button", name=f"Add {block_id} to canvas")
    nodes = canvas(page).locator(".react-flow__node")
    before = nodes.count()
    for attempt in range(2):
        settled(page)
        if not button.is_visible():
            expander.get_by_text(re.compile(rf"^{re.escape(block_id)} ·")).click()
        button.click()
        try:
            page.get_by_text(re.compile(rf"added .* \({re.escape(block_id)}@")).wait_for(timeout=30_000)
            return
        except PlaywrightTimeout:
            # Only a click the browser never delivered is tried again: nothing was added to the canvas.
            if attempt or nodes.count() != before:
                raise


def canvas(page):
    return page.frame_locator("iframe[title='streamlit_flow.streamlit_flow']")


def canvas_quiet(page, ms: int = 800) -> None:
    """Wait until the page has settled and the canvas has sent nothing for `ms` milliseconds.

    After drawing a new state the component runs an asynchronous layout pass and then replaces its edges with
    those it had when the pass began: an edge drawn during the pass vanishes from the canvas (a user sees it
    go and draws it again). A test waits for the pass, which ends with the component sending its value.
    """
    settled(page)
    page.wait_for_function(f"() => Date.now() - window.__canvasSent > {ms}")
    settled(page)


def drag_edge(page, src: str, dst: str, expect: re.Pattern | str) -> None:
    """Draw an edge from `src`'s output handle to `dst`'s input handle and wait for the page's `expect`."""
    frame = canvas(page)
    source = frame.locator(f".react-flow__node[data-id='{src}'] .react-flow__handle.source")
    target = frame.locator(f".react-flow__node[data-id='{dst}'] .react-flow__handle.target")
    for attempt in range(2):
        source.wait_for()
        target.wait_for()
        canvas_quiet(page)
        a, b = source.bounding_box(), target.bounding_box()
        page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
        page.mouse.down()
        page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=15)  # React Flow follows moves
        page.mouse.up()
        try:
            page.get_by_text(expect).first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            # Drawn again only when the canvas itself no longer shows the edge (see canvas_quiet).
            canvas_quiet(page)
            if attempt or frame.locator(f".react-flow__edge[data-testid*='{src}'][data-testid*='{dst}']").count():
                raise


def test_drag_two_blocks_and_connect_them_on_the_canvas_and_refuse_a_bad_edge(page):
    open_page(page, "Builder")
    page.get_by_role("button", name="Start an empty pipeline").click()
    add_from_palette(page, "chat.faq-csv")
    add_from_palette(page, "chat.minilm-encoder")
    add_from_palette(page, "service.api")
    drag_edge(
        page, "faq-csv", "minilm-encoder", re.compile(r"connected faq-csv\.examples (->|→) minilm-encoder\.examples")
    )
    drag_edge(
        page,
        "faq-csv",
        "api",
        "Cannot connect faq-csv to api: faq-csv gives examples (TextPairs) but api takes model (Model)",
    )
    page.get_by_role("tab", name="Connections").click()
    page.get_by_text("faq-csv.examples -> minilm-encoder.examples").first.wait_for()  # the tab draws after a rerun
    assert page.get_by_text("faq-csv.examples -> api.model").count() == 0


def test_the_whole_journey_template_upload_run_try_key_usage(page, tmp_path):
    IMG.mkdir(parents=True, exist_ok=True)
    open_page(page, "Templates")
    page.get_by_role("heading", name="faq-chatbot").wait_for()
    page.screenshot(path=str(IMG / "templates.png"))
    use_template(page, "faq-chatbot")
    page.get_by_text("Opened the faq-chatbot template.").wait_for()
    canvas(page).locator(".react-flow__node[data-id='classifier']").wait_for()

    rows = ["question,answer"]
    for topic, answer in [("invoice", "Open Billing."), ("parcel", "Open Orders."), ("password", "Use Reset.")]:
        rows += [
            f"{q} {topic}?,{answer}"
            for q in ("where is my", "help with my", "problem with my", "I need my", "what about my")
        ]
    csv = tmp_path / "shop-faq.csv"
    csv.write_text("\n".join(rows) + "\n")
    page.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(str(csv))
    page.get_by_text(re.compile(r"shop-faq\.csv stored as data/shop-faq\.csv")).wait_for()
    page.get_by_text("Random sample of the data").wait_for()
    page.get_by_text("The pipeline is valid.").wait_for()
    page.screenshot(path=str(IMG / "builder.png"))

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("heading", name=re.compile(r"faq-chatbot · (queued|running|succeeded)")).wait_for()
    page.get_by_role("heading", name="faq-chatbot · succeeded").wait_for(timeout=240_000)
    page.locator("[data-testid='stMetricLabel']", has_text="accuracy").first.wait_for()
    page.locator("[data-testid='stMetricLabel']", has_text="Total").first.wait_for()
    page.screenshot(path=str(IMG / "runs.png"))

    page.get_by_role("button", name="Open the service").click()
    page.get_by_role("tab", name="Try it").wait_for()
    page.get_by_role("textbox", name="text").fill("help with my password please")
    page.get_by_role("button", name="Ask").click()
    page.get_by_text("Use Reset.", exact=True).first.wait_for()
    page.screenshot(path=str(IMG / "services.png"))
    page.get_by_role("tab", name="API keys").click()
    page.get_by_role("button", name="Create an API key").click()
    page.get_by_text("shown only once", exact=False).wait_for()
    key = page.locator("[data-testid='stCode']").filter(has_text=re.compile(r"^aib_")).first.inner_text().strip()
    page.get_by_role("tab", name="API", exact=True).click()
    assert page.get_by_text(f"X-API-Key: {key}", exact=False).count() >= 1
    page.get_by_role("tab", name="Usage").click()
    page.get_by_text("Calls").first.wait_for()

    open_page(page, "Marketplace")
    page.get_by_text("Details").first.wait_for()
    page.screenshot(path=str(IMG / "marketplace.png"))
    open_page(page, "Wallet")
    page.screenshot(path=str(IMG / "wallet.png"))
    open_page(page, "Provide")
    page.get_by_role("tab", name="Publish a dataset").wait_for()
    page.get_by_role("button", name="Publish").wait_for()
    page.screenshot(path=str(IMG / "provide.png"))
