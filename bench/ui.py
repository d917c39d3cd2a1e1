"""First render of each workbench page once warm, in a real browser, against a bare Streamlit page.

Usage: python bench/ui.py [--quick]
Starts `aib ui` (after training the faq-chatbot-fast template once, so Runs and Services have content) and a
bare one-title Streamlit app, both on free loopback ports, and drives Debian's chromium with Playwright.
A page's time runs from the click on its sidebar link until its title is shown and Streamlit has finished
running the page script; the baseline is the same measure for the bare app (reload until idle).
Figures (last line, JSON): render_s_<page> (median), worst_render_s, bare_render_s, worst_vs_bare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import median, print_figures, print_table, train_template

PAGES = ["Templates", "Builder", "Marketplace", "Runs", "Services", "Wallet", "Provide"]
# Streamlit marks the app root with the script's state; "notRunning" once the page script has finished.
IDLE = """() => !!document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]')"""


def timed_until_idle(page, action, heading: str) -> float:
    t0 = time.perf_counter()
    action()
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    page.wait_for_function(IDLE, polling=20)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one measured visit per page instead of five")
    args = parser.parse_args()
    repeats = 1 if args.quick else 5

    from playwright.sync_api import sync_playwright

    from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS, start_ui, stop_ui
    from runtime.processes import free_port

    train_template()
    bare_script = Path(tempfile.mkdtemp()) / "bare.py"
    bare_script.write_text("import streamlit as st\n\nst.title('Bare')\n")
    ui, url = start_ui("127.0.0.1", free_port())
    bare, bare_url = start_ui("127.0.0.1", free_port(), script=bare_script)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(bare_url)
            page.get_by_role("heading", name="Bare").wait_for()
            bare_times = [timed_until_idle(page, page.reload, "Bare") for _ in range(repeats + 1)][1:]
            page.goto(url)
            page.get_by_role("heading", name="Templates").wait_for()
            card = page.locator("[data-testid='stVerticalBlock']").filter(
                has=page.get_by_role("heading", name="faq-chatbot", exact=True)
            )
            card.last.get_by_role("button", name="Use this template").click()  # the Builder shows a real pipeline
            page.get_by_role("heading", name="Builder", exact=True).wait_for()
            page.wait_for_function(IDLE, polling=20)
            times: dict[str, list[float]] = {name: [] for name in PAGES}
            for round_ in range(repeats + 1):  # round 0 warms every page up (imports, model and bundle loads)
                for name in PAGES:
                    seconds = timed_until_idle(page, page.get_by_role("link", name=name).click, name)
                    if round_:
                        times[name].append(seconds)
            browser.close()
    finally:
        stop_ui(ui)
        stop_ui(bare)
    bare_s = median(bare_times)
    rows = [[name, median(ts), max(ts), round(median(ts) / bare_s, 1)] for name, ts in times.items()]
    print_table(
        "first render once warm (seconds; click -> title shown and script finished)",
        ["page", "median s", "max s", "x bare page"],
        rows + [["(bare page)", bare_s, max(bare_times), 1.0]],
    )
    figures = {f"render_s_{name.lower()}": round(median(ts), 3) for name, ts in times.items()}
    worst = max(max(ts) for ts in times.values())
    figures.update(
        {
            "worst_render_s": round(worst, 3),
            "bare_render_s": round(bare_s, 3),
            "worst_vs_bare": round(worst / bare_s, 1),
            "quick": args.quick,
        }
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
