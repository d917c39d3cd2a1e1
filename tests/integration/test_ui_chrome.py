"""No Streamlit chrome on the workbench (issue 22, item 7), in a real browser (Playwright driving Debian's chromium)
against a workbench started as `aib ui` starts it: no Deploy button, developer menu or running figure, our own
title and icon, and our own page for an address that has none."""

from __future__ import annotations

import base64
import shutil

from playwright.sync_api import sync_playwright

from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS, start_ui, stop_ui
from tests.conftest import free_port

# Whether Streamlit's running figure (its status widget, with a Stop button) was ever visible while a page ran.
RECORD_STATUS_WIDGET = """
window.__statusWidgetSeen = false;
new MutationObserver(() => {
  const w = document.querySelector('[data-testid=stStatusWidget]');
  if (w && w.getClientRects().length && getComputedStyle(w).display !== 'none') window.__statusWidgetSeen = true;
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def settled(page) -> None:
    """Wait until no script run is in progress and nothing on the page is stale."""
    page.wait_for_function(
        "() => !!document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')"
        " && !document.querySelector('[data-stale=true]')"
    )


def test_no_streamlit_chrome_our_title_and_icon_and_our_own_not_found_page(prefect_api, tmp_path):
    assert shutil.which(CHROMIUM), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    # A workbench of its own: an unknown address as its very first visit is where Streamlit's dialog showed.
    proc, url = start_ui("127.0.0.1", free_port())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_init_script(RECORD_STATUS_WIDGET)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{url}/no-such-page")
            page.get_by_role("heading", name="Page not found", exact=True).wait_for()
            settled(page)
            assert page.title() == "Page not found · Easy AI Builder"
            assert page.get_by_text("does not seem to exist").count() == 0  # Streamlit's own dialog
            page.screenshot(path=str(tmp_path / "not-found.png"))
            page.get_by_role("link", name="Open the templates").click()
            page.get_by_role("heading", name="faq-chatbot", exact=True).wait_for()
            settled(page)
            assert page.title() == "Templates · Easy AI Builder"
            icon = page.locator("link[rel*='icon']").first.get_attribute("href")
            assert icon.startswith("data:image/svg+xml;base64,")
            assert b"<title>Easy AI Builder</title>" in base64.b64decode(icon.split(",", 1)[1])
            # Opening a template runs a page long enough for Streamlit to show its running figure.
            card = page.locator("[data-testid='stVerticalBlock']").filter(
                has=page.get_by_role("heading", name="faq-chatbot", exact=True)
            )
            card.last.get_by_role("button", name="Use this template").click()
            page.get_by_text("Opened the faq-chatbot template.").wait_for()
            settled(page)
            assert page.title() == "Builder · Easy AI Builder"
            assert page.get_by_role("button", name="Deploy").count() == 0
            assert page.locator("[data-testid='stMainMenu']").count() == 0  # the developer menu
            assert not page.evaluate("window.__statusWidgetSeen")  # the running figure with its Stop button
            page.screenshot(path=str(tmp_path / "builder.png"))
            browser.close()
    finally:
        stop_ui(proc)
