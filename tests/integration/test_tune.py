"""`aib run --tune` over the real path: each trial a real, billed run; the best is never worse than the template."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from runtime.db import Run, Usage, session_factory
from tests.integration.conftest import aib

TRIALS = 4


def test_a_tune_of_the_faq_template_finds_params_at_least_as_good_on_the_held_out_set(prefect_api, template_dir):
    r = aib("run", str(template_dir / "faq-chatbot-fast.yaml"), "--tune", str(TRIALS), "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr  # a trial stopped early is the tuner's decision, not an error
    found = json.loads(r.stdout.strip().splitlines()[-1])
    assert found["objective"] == "accuracy" and found["direction"] == "maximize" and found["node"] == "classifier"
    trials = found["trials"]
    assert len(trials) == TRIALS and trials[0]["epochs"] == 60 and trials[0]["lr"] == 0.02  # the template first
    assert found["best"]["accuracy"] >= found["defaults"]["accuracy"]
    with session_factory()() as s:
        for t in trials:
            run = s.get(Run, t["run_id"])
            assert (
                run.metrics["tune"]["study"] == found["study"]
                and run.metrics["tune"]["params"]["epochs"] == t["epochs"]
            )
            # Each trial is a real run, billed like any: its usage records are in the ledger.
            billed = s.scalar(select(func.count()).select_from(Usage).where(Usage.run_id == t["run_id"]))
            assert billed >= 1, t
            if t["state"] == "done":  # the figure reported is the run's own held-out accuracy
                assert run.status == "succeeded" and run.metrics["accuracy"] == t["accuracy"]
                assert run.metrics["eval_split"] == "heldout"
            else:
                assert t["state"] == "pruned" and "stopped early by the tuner" in run.error
        assert found["total_wei"] == sum(
            s.scalar(select(func.coalesce(func.sum(Usage.amount_wei), 0)).where(Usage.run_id == t["run_id"]))
            for t in trials
        )
    # The run page of any trial shows the whole search, the best starred.
    from streamlit.testing.v1 import AppTest

    from tests.integration.test_ui_pages import PAGES

    at = AppTest.from_file(str(PAGES / "runs_page.py"), default_timeout=60)
    at.session_state["selected_run"] = trials[1]["run_id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Tuning" in [h.value for h in at.subheader]
    table = next(d.value for d in at.dataframe if "Trial" in d.value.columns)
    assert list(table["Trial"]) == list(range(TRIALS))
    assert list(table["Run"][table["Best"] == "★"]) == [found["best"]["run_id"]]


def test_a_budget_below_one_trials_quote_is_refused_with_the_numbers(template_dir):
    r = aib("run", str(template_dir / "faq-chatbot-fast.yaml"), "--tune", "3", "--budget", "0.0001")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the budget 0.0001 AIC is below one trial's quote" in r.stderr and "3 trials would cost" in r.stderr
    r = aib("run", str(template_dir / "faq-chatbot-fast.yaml"), "--budget", "1")
    assert r.returncode == 2 and "--budget goes with --tune" in r.stderr
