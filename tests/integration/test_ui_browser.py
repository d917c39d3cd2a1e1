"""The workbench in a real browser (Playwright driving Debian's chromium) against `aib ui` on a free port.

The canvas is a React Flow component inside an iframe: these tests drag its handles with the mouse, which
AppTest cannot do. Screenshots of each page of the journey are written to docs/img/ (used by the README).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
# `aib run` is a new Python process that imports torch and Prefect before it records its run (20-30 s on a busy
# machine); the Runs page says "Starting run…" until then. The run's own budget covers that and the training.
RUN_BUDGET_MS = 240_000

# What the canvas component and the page did last (see canvas_idle). In the page: each value the component sent
# and each change of the script's state; in the component's frame: each drawing the page sent it.
RECORD_CANVAS = """
if (window === window.top) {
  window.__canvas = {lastStamp: -1, lastNodes: 0, sinceDrawing: 0, lastEventAt: 0};
  window.addEventListener('message', (e) => {
    if (!e.data || e.data.type !== 'streamlit:setComponentValue') return;
    const c = window.__canvas;
    c.lastStamp = e.data.value.timestamp;
    c.lastNodes = e.data.value.nodes.length;
    c.sinceDrawing += 1;
    c.lastEventAt = Date.now();
  });
  new MutationObserver(() => { window.__canvas.lastEventAt = Date.now(); })
    .observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
} else {
  window.addEventListener('message', (e) => {
    const d = e.data;
    if (!d || d.type !== 'streamlit:render' || !d.args || d.args.component !== 'streamlit_flow') return;
    const c = window.top.__canvas;
    c.lastEventAt = Date.now();
    // The component takes a drawing stamped no earlier than the last value it sent (else it keeps its own).
    if (c.lastStamp <= d.args.timestamp) c.sinceDrawing = 0;
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
    context.add_init_script(RECORD_CANVAS)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.base = ui_url
    yield pg
    pg.screenshot(path=str(tmp_path / "last.png"), full_page=True)  # what the page showed at the end (failures)
    print(f"last screenshot: {tmp_path / 'last.png'}")
    context.close()


def open_app(page) -> None:
    """Load the workbench; it opens on Templates."""
    page.goto(page.base)
    page.get_by_role("heading", name="Templates", exact=True).wait_for()


def open_page(page, title: str) -> None:
    """Open another page from the sidebar, as a user does; returns once that page has been drawn."""
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()  # only the new page has this title
    settled(page)


def use_template(page, name: str) -> None:
    """Press "Use this template" on the card of template `name` (every card has that button)."""
    card = page.locator("[data-testid='stVerticalBlock']").filter(
        has=page.get_by_role("heading", name=name, exact=True)
    )
    card.last.get_by_role("button", name="Use this template").click()  # the innermost block holding it: its card


def settled(page) -> None:
    """Wait until no script run is in progress and nothing on the page is stale.

    Only meaningful once the run that an action started has shown something of its own: right after a click the
    page can still be idle, before the run begins.
    """
    page.wait_for_function(
        "() => !!document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')"
        " && !document.querySelector('[data-stale=true]')"
    )


def canvas(page):
    return page.frame_locator("iframe[title='streamlit_flow.streamlit_flow']")


def canvas_idle(page, quiet_ms: int = 500) -> None:
    """Wait until the canvas has finished drawing the page's latest state and the page is idle.

    After taking a new drawing the component sends its value, then (when it has nodes) runs an asynchronous
    layout pass that sends its value again and puts back the edges it had when the pass began: an edge drawn
    during the pass vanishes, and each value it sends reruns the page. So: both values of the last drawing it
    took have been sent, no script runs, nothing is stale, and for `quiet_ms` nothing of that has changed
    (the frame hears of a drawing an instant after the page has drawn it).
    """
    page.wait_for_function(
        """ms => {
          const c = window.__canvas, app = document.querySelector('[data-testid=stApp]');
          return !!app && app.dataset.testScriptState === 'notRunning' && !document.querySelector('[data-stale=true]')
            && c.sinceDrawing >= (c.lastNodes ? 2 : 1) && Date.now() - c.lastEventAt > ms;
        }""",
        arg=quiet_ms,
    )


def add_from_palette(page, block_id: str) -> None:
    """Search the palette for `block_id`, open its entry and press its Add button; wait for the page to say so."""
    page.get_by_role("textbox", name="Search blocks").fill(block_id)
    page.get_by_role("textbox", name="Search blocks").press("Enter")
    expander = page.locator("[data-testid='stSidebar'] [data-testid='stExpander']")
    labels = expander.locator("summary [data-testid='stMarkdownContainer']")
    expect(labels).to_have_text([re.compile(rf"^{re.escape(block_id)} ·")], timeout=30_000)  # only it is listed
    canvas_idle(page)
    button = expander.get_by_role("button", name=f"Add {block_id} to canvas")
    if not button.is_visible():
        expander.get_by_text(re.compile(rf"^{re.escape(block_id)} ·")).click()
    button.click()
    page.get_by_text(re.compile(rf"added .* \({re.escape(block_id)}@")).wait_for()


def drag_edge(page, src: str, dst: str, outcome: re.Pattern | str) -> None:
    """Draw an edge from `src`'s output handle to `dst`'s input handle and wait for the page's `outcome`."""
    frame = canvas(page)
    source = frame.locator(f".react-flow__node[data-id='{src}'] .react-flow__handle.source")
    target = frame.locator(f".react-flow__node[data-id='{dst}'] .react-flow__handle.target")
    source.wait_for()
    target.wait_for()
    canvas_idle(page)
    a, b = source.bounding_box(), target.bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=15)  # React Flow follows the moves
    page.mouse.up()
    page.get_by_text(outcome).first.wait_for()


def test_drag_two_blocks_and_connect_them_on_the_canvas_and_refuse_a_bad_edge(page):
    open_app(page)
    open_page(page, "Builder")
    page.get_by_role("button", name="Start an empty pipeline").click()
    page.get_by_role("textbox", name="Search blocks").wait_for()  # the palette comes with a pipeline
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


def test_the_whole_journey_template_upload_run_try_key_usage(page, tmp_path, request):
    IMG.mkdir(parents=True, exist_ok=True)
    open_app(page)
    page.get_by_role("heading", name="faq-chatbot").wait_for()
    settled(page)
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
    # A file chosen while a script run is starting can be lost: Streamlit answers the uploader's request for an
    # upload address through its message queue, which it empties of all but lifecycle messages when a run starts.
    # The canvas has just appeared and its first values rerun the page; a user chooses the file after that.
    canvas_idle(page)
    page.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(str(csv))
    page.get_by_text(re.compile(r"shop-faq\.csv stored as data/shop-faq\.csv")).wait_for()
    page.get_by_text("Random sample of the data").wait_for()
    page.get_by_text("The pipeline is valid.").wait_for()
    page.screenshot(path=str(IMG / "builder.png"))

    page.get_by_role("button", name="Run", exact=True).click()
    # The Runs page answers at once: the run starting, or (once `aib run` has recorded it) the run itself.
    page.get_by_text(re.compile(r"^Starting run run-")).or_(
        page.get_by_role("heading", name=re.compile(r"faq-chatbot · (queued|running|succeeded)"))
    ).first.wait_for()
    page.get_by_role("heading", name="faq-chatbot · succeeded").wait_for(timeout=RUN_BUDGET_MS)
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

    # The key works against the served API, and the call shows in the page's usage.
    page.get_by_role("tab", name="API", exact=True).click()
    page.get_by_role("button", name="Start the API server").click()
    request.addfinalizer(stop_api_servers)
    running = page.get_by_text(re.compile(r"^The API is running at http://"))
    running.or_(page.get_by_text(re.compile(r"^the API server of "))).first.wait_for(timeout=90_000)  # app: 60 s
    assert running.is_visible(), page.locator("[data-testid='stAlert']").all_inner_texts()
    url = re.search(r"http://127\.0\.0\.1:\d+", running.inner_text()).group(0)
    assert page.get_by_text(f"X-API-Key: {key}", exact=False).count() >= 1  # the snippets carry the new key
    calls = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=re.compile(r"^Calls$"))
    )
    page.get_by_role("tab", name="Usage").click()
    calls_shown = calls.locator("[data-testid='stMetricValue']")
    expect(calls_shown).to_have_text("1", timeout=30_000)  # the question asked in Try it
    answer = httpx.post(
        f"{url}/v1/predict", json={"text": "help with my password please"}, headers={"X-API-Key": key}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["answer"] == "Use Reset.", answer.text
    page.reload()  # what a user does to see new usage
    page.get_by_role("tab", name="Usage").click()
    expect(calls_shown).to_have_text("2", timeout=30_000)

    open_page(page, "Marketplace")
    page.get_by_text("Details").first.wait_for()
    page.screenshot(path=str(IMG / "marketplace.png"))
    open_page(page, "Wallet")
    page.screenshot(path=str(IMG / "wallet.png"))
    open_page(page, "Provide")
    page.get_by_role("tab", name="Publish a dataset").wait_for()
    page.get_by_role("button", name="Publish").wait_for()
    page.screenshot(path=str(IMG / "provide.png"))


def stop_api_servers() -> None:
    """Stop every API server the workbench started (they run detached from it)."""
    from builder.ui import actions
    from runtime.config import get_settings

    for info in (get_settings().home / "ui" / "servers").glob("*.json"):
        actions.stop_server(info.stem)
