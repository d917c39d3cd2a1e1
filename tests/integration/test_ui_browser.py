"""A first-time user's journey through the workbench in a real browser (Playwright driving Debian's chromium, real
mouse events, no retries) against `aib ui` on a free port.

Screenshots of every page are saved as test artifacts (test-artifacts/ui/); `AIB_DOCS_SCREENSHOTS=1` also writes them
to docs/img/ for the docs. The canvas itself (drag in, click, connect, scroll) is tested in test_ui_canvas_browser.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import yaml
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
FRAME = "iframe[title='builder.ui.canvas.canvas']"
# `aib run` is a new Python process that imports torch and Prefect before it records its run (20-30 s on a busy
# machine); the Runs page says "Starting run…" until then. The run's own budget covers that and the training.
RUN_BUDGET_MS = 240_000


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


def idle(page) -> None:
    """Wait until the page has taken every event the canvas sent and drawn the result (see test_ui_canvas_browser)."""
    page.wait_for_function(
        """frame => {
          const app = document.querySelector('[data-testid=stApp]');
          const root = document.querySelector(frame)?.contentDocument?.querySelector('.aib-root');
          return !!app && app.dataset.testScriptState === 'notRunning' && !document.querySelector('[data-stale=true]')
            && (!root || root.dataset.pending === '0');
        }""",
        arg=FRAME,
    )


def shot(page, name: str) -> None:
    """A screenshot of the page as the user sees it, kept as a test artifact; with AIB_DOCS_SCREENSHOTS=1 also the
    docs' picture of that page (docs/img), so a test run never changes tracked files unless asked to."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if os.environ.get("AIB_DOCS_SCREENSHOTS") == "1":
        page.locator("h1").first.scroll_into_view_if_needed()  # the docs show a page from its top
        page.screenshot(path=str(IMG / f"{name}.png"))


def edit_setting(page, node_id: str, label: str, value: str) -> None:
    """Click block `node_id` on the canvas, type `value` into its setting `label`, and wait until it is saved."""
    frame = page.frame_locator(FRAME)
    frame.locator(f".react-flow__node[data-id='{node_id}'] .aib-name").click()
    expect(page.get_by_role("combobox", name="Selected block")).to_have_value(re.compile(rf"{re.escape(node_id)}$"))
    idle(page)
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    page.get_by_text(f"{label} of {node_id} saved.").wait_for()
    idle(page)


def test_a_first_time_user_edits_every_block_uploads_a_semicolon_csv_runs_reloads_tries_and_uses_a_key(
    page, tmp_path, request, aib_home
):
    open_app(page)
    page.get_by_role("heading", name="faq-chatbot", exact=True).wait_for()
    settled(page)
    shot(page, "templates")
    use_template(page, "faq-chatbot-fast")  # the FAQ bot on MiniLM: the same pages, a quicker run
    page.get_by_text("Opened the faq-chatbot-fast template.").wait_for()
    page.frame_locator(FRAME).locator(".react-flow__node[data-id='classifier']").wait_for()
    idle(page)
    address = re.search(r"pipeline=([a-z0-9-]+)", page.url).group(1)  # the pipeline's own address
    workspace = aib_home / "ui" / "workspaces" / address

    # A setting of every block, each reached by clicking the block on the canvas.
    for node_id, label, value in (
        ("faq", "Random seed", "3"),
        ("encoder", "Sentences at once", "16"),
        ("classifier", "Training rounds", "40"),
        ("api", "Confidence needed", "0.3"),
    ):
        edit_setting(page, node_id, label, value)
    saved = yaml.safe_load((workspace / "pipeline.yaml").read_text())
    assert saved["blocks"]["faq"]["params"]["seed"] == 3 and saved["blocks"]["encoder"]["params"]["batch_size"] == 16
    assert (
        saved["blocks"]["classifier"]["params"]["epochs"] == 40 and saved["blocks"]["api"]["params"]["threshold"] == 0.3
    )

    # The user's own FAQ, as Excel saves it in many countries: semicolons, Latin-1. Previewed, then kept.
    rows = ["question;answer"]
    for topic, answer in [
        ("facture", "Ouvrez Facturation."),
        ("colis", "Ouvrez Commandes."),
        ("mot de passe", "Utilisez Réinitialiser."),
    ]:
        rows += [
            f"{q} {topic} ?;{answer}"
            for q in ("où est ma", "aide avec ma", "problème de", "il me faut ma", "quid de ma")
        ]
    csv = tmp_path / "shop-faq.csv"
    csv.write_bytes(("\r\n".join(rows) + "\r\n").encode("latin-1"))
    frame = page.frame_locator(FRAME)
    frame.locator(".react-flow__node[data-id='faq'] .aib-name").click()
    expect(page.get_by_role("combobox", name="Selected block")).to_have_value(re.compile(r"faq$"))
    idle(page)
    page.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(str(csv))
    page.get_by_text(re.compile(r"read as semicolon-separated, Latin-1")).wait_for()
    page.get_by_role("button", name="Use this file").click()
    page.get_by_text(re.compile(r"shop-faq\.csv stored as data/shop-faq\.csv")).wait_for()
    page.get_by_text("The pipeline is valid.").wait_for()
    idle(page)
    shot(page, "builder")

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text(re.compile(r"^Starting run run-")).or_(
        page.get_by_role("heading", name=re.compile(r"faq-chatbot-fast · (queued|running|succeeded)"))
    ).first.wait_for()
    page.reload()  # mid-run: the address keeps the run on screen
    page.get_by_text(re.compile(r"^Starting run run-")).or_(
        page.get_by_role("heading", name=re.compile(r"faq-chatbot-fast · (queued|running|succeeded)"))
    ).first.wait_for()
    page.get_by_role("heading", name="faq-chatbot-fast · succeeded").wait_for(timeout=RUN_BUDGET_MS)
    page.locator("[data-testid='stMetricLabel']", has_text="Accuracy").first.wait_for()
    page.locator("[data-testid='stMetricLabel']", has_text="Total").first.wait_for()
    settled(page)
    shot(page, "runs")

    page.get_by_role("button", name="Open the service").click()
    page.get_by_role("tab", name="Try it").wait_for()
    page.get_by_role("textbox", name="text").fill("aide avec ma mot de passe ?")
    page.get_by_role("button", name="Ask").click()
    page.get_by_text("Utilisez Réinitialiser.", exact=True).first.wait_for()
    shot(page, "services")
    page.get_by_role("tab", name="API keys").click()
    page.get_by_role("button", name="Create an API key").click()
    page.get_by_text("shown only once", exact=False).wait_for()
    key = page.locator("[data-testid='stCode']").filter(has_text=re.compile(r"^aib_")).first.inner_text().strip()

    # The key works against the served API, and the call shows in the page's usage without a reload.
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
        f"{url}/v1/predict", json={"text": "où est ma facture ?"}, headers={"X-API-Key": key}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["answer"] == "Ouvrez Facturation.", answer.text
    expect(calls_shown).to_have_text("2", timeout=30_000)  # live: no reload

    for title, name in (("Marketplace", "marketplace"), ("Wallet", "wallet"), ("Provide", "provide")):
        open_page(page, title)
        shot(page, name)
    # The reload started a new browser session: the Builder opens on the user's pipelines, this one among them.
    open_page(page, "Builder")
    page.get_by_role("heading", name="My pipelines").wait_for()
    page.get_by_role("button", name="Open").first.wait_for()
    assert page.locator("[data-testid='stButton'] button:has-text('Open')").count() >= 1
    page.get_by_text("faq-chatbot-fast", exact=False).first.wait_for()
    shot(page, "my-pipelines")


def stop_api_servers() -> None:
    """Stop every API server the workbench started (they run detached from it)."""
    from builder.ui import actions
    from runtime.config import get_settings

    for info in (get_settings().home / "ui" / "servers").glob("*.json"):
        actions.stop_server(info.stem)
