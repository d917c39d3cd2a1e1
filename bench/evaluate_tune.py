"""See why a model is wrong and make it better: what the evaluation views cost a run (eval_overhead) and what a tune
gains over the template's defaults (tune_gain), both measured through the real path in one run.

    python bench/evaluate_tune.py            # FAQ and voice-commands tunes of 8 and 4 trials, every template timed
    python bench/evaluate_tune.py --quick    # a 3-trial FAQ tune; the FAQ, digit and reduced lane templates timed

--quick runs the FAQ bot as `faq-chatbot-fast` (the same pipeline on MiniLM), full runs as `faq-chatbot` (MPNet).

eval_overhead: the seconds a model block spends computing its evaluation (per-class figures, confusion matrix,
reliability diagram, coverage curve, its mistakes rendered as text, images or WAV clips; `evaluation.seconds`), as a
share of the whole run's wall time, every step computed (a fresh data folder). tune_gain: the best trial's held-out
figure minus the template's own (trial 0 of the same search), each trial a real run.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import json
import os
import shutil
import tempfile
import time

# A fresh data folder: every step really computes (no cached step outputs from an earlier bench run).
if "AIB_HOME" not in os.environ:  # removed at exit: its bundles take gigabytes
    os.environ["AIB_HOME"] = tempfile.mkdtemp(prefix="aib-bench-evaluate-")
    atexit.register(shutil.rmtree, os.environ["AIB_HOME"], ignore_errors=True)

from common import ROOT, TEMPLATE, print_figures, print_table, train_template  # noqa: E402

OVERHEAD_TARGET = 0.05
# The templates timed and their settings: --quick keeps the lane-keeping run small (the bench of every template at
# its real size is bench/templates.py); the voice template (5 minutes) is timed in full runs only.
TIMED = {
    "faq-chatbot": ([], []),
    "digit-reader": ([], []),
    "lane-keeping": (["roads.scenes=800", "pilot.epochs=8"], []),
    "voice-commands": (None, []),
}
TUNES = {"faq-chatbot": (3, 8), "voice-commands": (None, 4)}  # (quick trials, full trials); None: not in --quick


def template_of(name: str, quick: bool) -> str:
    """The template run for `name`: --quick runs the FAQ bot of the other benches (common.TEMPLATE, on MiniLM)."""
    return TEMPLATE.stem if quick and name == "faq-chatbot" else name


def tune(template: str, trials: int) -> dict:
    """`aib run TEMPLATE --tune N --json`, in this process (its Prefect and data folder); the tune's JSON."""
    import typer

    from builder.cli.tune import tune as run_tune

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        try:
            run_tune(ROOT / "templates" / f"{template}.yaml", [], trials, None, json_=True)
        except typer.Exit as exc:
            raise SystemExit(f"the {template} tune stopped: exit {exc.exit_code}") from None
    return json.loads(captured.getvalue().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 3-trial FAQ tune and three templates timed")
    args = parser.parse_args()
    os.environ.setdefault("AIB_PAYMENTS", "off")  # figures of the models, not of the chain

    from runtime.prefect_env import configure_prefect

    configure_prefect()
    from prefect.testing.utilities import prefect_test_harness

    figures: dict = {"quick": args.quick}
    timed, tuned = [], []
    with prefect_test_harness(server_startup_timeout=180):
        from prefect import flow

        flow(lambda: None, name="warm-up")()  # Prefect's first flow run starts its server: not a run's cost
        shares = []
        for name, (quick, full) in TIMED.items():
            overrides = quick if args.quick else full
            if overrides is None:
                continue
            t0 = time.perf_counter()
            summary = train_template(overrides, template=ROOT / "templates" / f"{template_of(name, args.quick)}.yaml")
            seconds = time.perf_counter() - t0
            if summary["status"] != "succeeded":
                raise SystemExit(f"{name} failed: {summary['error']}")
            (evaluation,) = summary["evaluation"].values()
            share = evaluation["seconds"] / seconds
            shares.append(share)
            timed.append([name, round(seconds, 2), round(evaluation["seconds"], 3), round(share, 4)])
            figures[f"eval_overhead_{name.split('-')[0]}"] = round(share, 4)
        figures["eval_overhead"] = round(max(shares), 4)
        figures["eval_overhead_met"] = max(shares) <= OVERHEAD_TARGET
        for name, (quick, full) in TUNES.items():
            trials = quick if args.quick else full
            if trials is None:
                continue
            found = tune(template_of(name, args.quick), trials)
            key, objective = name.split("-")[0], found["objective"]
            default, best = found["defaults"][objective], found["best"][objective]
            states = [t["state"] for t in found["trials"]]
            tuned.append([name, trials, objective, default, best, round(best - default, 4), states.count("pruned")])
            figures |= {
                f"{key}_tune_default": default,
                f"{key}_tune_best": best,
                f"{key}_tune_gain": round(best - default, 4),
                f"{key}_tune_trials": trials,
                f"{key}_tune_pruned": states.count("pruned"),
            }
        figures["tune_never_worse"] = all(row[4] >= row[3] for row in tuned)
    print_table(
        f"evaluation views: their share of a run (target ≤ {OVERHEAD_TARGET:.0%})",
        ["template", "run s", "evaluation s", "share"],
        timed,
    )
    print_table(
        "tuning: the best trial against the template's defaults (trial 0), on the held-out set the tuner chose on",
        ["template", "trials", "figure", "defaults", "best", "gain", "stopped early"],
        tuned,
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
