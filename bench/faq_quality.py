"""FAQ quality, leave-one-FAQ-out: each shipped FAQ trained as a user trains theirs (their file, no held-out file)
with defaults chosen on the other FAQs only, its served model asked the FAQ's paraphrases and its out-of-scope
questions; the baseline is nearest neighbour on the same MiniLM embeddings with no fallback.

    python bench/faq_quality.py            # every shipped FAQ, every candidate default (about 75 s here)
    python bench/faq_quality.py --quick    # two FAQs, fewer candidates, MiniLM (about 30 s): the path, not the figures
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A fresh data folder: every step really trains (no cached step outputs from an earlier bench run).
if "AIB_HOME" not in os.environ:  # removed at exit: its bundles take gigabytes
    os.environ["AIB_HOME"] = tempfile.mkdtemp(prefix="aib-bench-faq-")
    atexit.register(shutil.rmtree, os.environ["AIB_HOME"], ignore_errors=True)

from common import ROOT, print_figures, print_table, train_template  # noqa: E402

TEMPLATE = ROOT / "templates" / "faq-chatbot.yaml"  # the template measured (common.TEMPLATE is its MiniLM twin)

DATA = ROOT / "templates" / "data"
WRONG_ANSWER_TARGETS = (0.02, 0.03, 0.04, 0.05, 0.10, 0.15, 0.20, 0.30)
EPOCHS = (30, 60, 120)
QUICK_TARGETS, QUICK_EPOCHS, QUICK_FAQS = (0.05, 0.10), (30,), 2  # two: each still chosen on another FAQ
# --quick runs the path on the smaller encoder (faq-chatbot-fast's): the test suite runs every quick bench, and MPNet's
# embeddings and 420 MB exports tripled this one's time there.
QUICK_ENCODER = "minilm"
TIMING_ROWS = 100
# Defaults are chosen by the margin (in-scope accuracy minus the out-of-scope answer rate: the figure issue 20 holds
# the template to against the baseline). A second rule, shown beside it, also keeps the bot's promise of at most
# 5 % wrong answers among those given on the other FAQs.
ANSWERED_WRONG_GOAL = 0.05
EXTRA_SETTINGS: list[str] = []  # pipeline settings every run of this bench gets (--without-answers)
Candidates = dict[tuple[str, int, float], dict[str, dict[str, float]]]  # (encoder, epochs, target) -> FAQ -> figures
# The sentence encoders a FAQ bot can use (marketplace blocks); --quick measures the template's alone.
ENCODERS = {"minilm": "chat.minilm-encoder@1.0.0", "mpnet": "chat.mpnet-encoder@1.0.0"}


def _template_encoder() -> str:
    """The encoder the faq-chatbot template ships with (its key in ENCODERS)."""
    import yaml

    use = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))["blocks"]["encoder"]["use"]
    return next(k for k, v in ENCODERS.items() if v == use)


TEMPLATE_ENCODER = _template_encoder()


@dataclass(frozen=True)
class Faq:
    """One business's FAQ: the file a user trains on, and the questions it is judged on (never trained on)."""

    name: str
    train: Path  # question,answer or intent,question,answer
    paraphrases: Path  # intent,question (or answer,question): the training questions asked in other words
    out_of_scope: Path  # kind,question: off-topic and near-business questions the FAQ has no answer for


def shipped_faqs() -> list[Faq]:
    """The template's own FAQ, then every folder of templates/data/faqs/ holding the three files."""
    faqs = [Faq("shop", DATA / "faq.csv", DATA / "faq-heldout.csv", DATA / "faqs" / "shop" / "out-of-scope.csv")]
    for folder in sorted((DATA / "faqs").iterdir()):
        files = [folder / n for n in ("faq.csv", "paraphrases.csv", "out-of-scope.csv")]
        if all(f.exists() for f in files):
            faqs.append(Faq(folder.name, *files))
    return faqs


@dataclass
class Questions:
    """What a FAQ is judged on: expected answer per paraphrase, and the out-of-scope questions with their kind."""

    train_texts: list[str]
    train_intents: list[str]
    answers: dict[str, str]
    paraphrases: list[str]
    expected: list[str]  # the answer each paraphrase must get
    expected_intents: list[str]
    out_of_scope: list[str]
    kinds: list[str]  # "off-topic" or "near"


def read_questions(faq: Faq) -> Questions:
    """Read a FAQ's three files with the product's own reader (the answers as the served model gives them)."""
    from blocks.chat.faq_csv import parse_faq, parse_heldout, read_table

    texts, intents, answers = parse_faq(read_table(faq.train), faq.train.name)
    para, para_intents = parse_heldout(read_table(faq.paraphrases), faq.paraphrases.name, answers)
    oos = read_table(faq.out_of_scope)
    return Questions(
        texts, intents, answers, para, [answers[i] for i in para_intents], para_intents,
        oos["question"].tolist(), oos["kind"].tolist(),
    )  # fmt: skip


@dataclass
class Served:
    """A FAQ's model as the service serves it: the predictor and the classifier it was exported from."""

    predictor: Any
    model: Any


def train_served(
    workdir: Path, name: str, overrides: list[str], encoder: str = TEMPLATE_ENCODER
) -> tuple[Served, float]:
    """Run the faq-chatbot template (with `encoder`) on the user's file data/`name`.csv alone (no held-out file);
    (served model, seconds of the run)."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.bundle import load_bundle
    from runtime.config import get_settings
    from runtime.db import Service, session_factory
    from runtime.store import StepCache

    pipeline_file = workdir / f"faq-{encoder}.yaml"
    settings = [f"faq.path=data/{name}.csv", "faq.heldout_path=null", *EXTRA_SETTINGS, *overrides]
    t0 = time.perf_counter()
    summary = train_template(settings, template=pipeline_file)
    seconds = time.perf_counter() - t0
    if summary["status"] != "succeeded":
        raise SystemExit(f"{name} failed: {summary['error']}")
    with session_factory()() as s:
        bundle_dir = s.get(Service, summary["service_id"]).bundle_dir
    # The classifier exactly as service.api received it (the step cache holds it), to set other targets' thresholds.
    key = compile_plan(load_pipeline(pipeline_file, settings)).step("classifier").cache_key
    model = StepCache(get_settings().cache_dir / "steps").get(key)["model"]
    return Served(load_bundle(bundle_dir), model), seconds


def threshold_at(model: Any, target: float) -> float:
    """The fallback threshold service.api sets for `target` (its own rule)."""
    from blocks.service.api import ServiceApiParams, service_settings

    return float(service_settings(model, ServiceApiParams(wrong_answer_target=target))[0]["threshold"])


def score(answered_right: list[bool], answered_in: list[bool], answered_out: list[bool]) -> dict[str, float]:
    """The figures of one FAQ from what happened to each question."""
    answered = sum(answered_in) + sum(answered_out)
    wrong = sum(a and not r for a, r in zip(answered_in, answered_right, strict=True)) + sum(answered_out)
    in_scope = sum(answered_right) / len(answered_right)
    oos_answered = sum(answered_out) / len(answered_out)
    return {
        "in_scope_accuracy": round(in_scope, 4),
        "out_of_scope_rejection": round(1 - oos_answered, 4),
        "answered_wrong_rate": round(wrong / answered, 4) if answered else 0.0,
        "margin": round(in_scope - oos_answered, 4),  # in-scope accuracy minus the out-of-scope answer rate
    }


def score_at_threshold(served: Served, q: Questions, threshold: float) -> dict[str, float]:
    """The figures the served model would reach with the fallback threshold set to `threshold`."""
    labels = served.predictor.labels
    probs_in = served.predictor.predict_proba([{"text": t} for t in q.paraphrases])
    probs_out = served.predictor.predict_proba([{"text": t} for t in q.out_of_scope])
    answered_in = [float(p.max()) >= threshold for p in probs_in]
    right = [a and labels[int(p.argmax())] == i for a, p, i in zip(answered_in, probs_in, q.expected_intents,
                                                                      strict=True)]  # fmt: skip
    return score(right, answered_in, [float(p.max()) >= threshold for p in probs_out])


def score_served(served: Served, q: Questions) -> dict[str, Any]:
    """The figures of the served model as a user meets them: the answer text given to each question."""
    fallback = served.predictor.fallback
    got_in = [r["answer"] for r in served.predictor.predict([{"text": t} for t in q.paraphrases])]
    got_out = [r["answer"] for r in served.predictor.predict([{"text": t} for t in q.out_of_scope])]
    answered_out = [a != fallback for a in got_out]
    figures: dict[str, Any] = score(
        [g == e for g, e in zip(got_in, q.expected, strict=True)], [a != fallback for a in got_in], answered_out
    )
    for kind in ("off-topic", "near"):
        mine = [not a for a, k in zip(answered_out, q.kinds, strict=True) if k == kind]
        figures[f"{kind}_rejection"] = round(sum(mine) / len(mine), 4)
    return figures


def nearest_neighbour(q: Questions) -> dict[str, float]:
    """The baseline: each question gets the answer of the closest training question (MiniLM cosine), never a
    fallback; the same embeddings as the template's encoder."""
    from blocks.chat.minilm_encoder import ENCODER_NAME, MiniLMEncoderParams, embed_texts

    params = MiniLMEncoderParams()
    config = {"name": ENCODER_NAME, "max_length": params.max_length, "normalize": params.normalize}
    train = embed_texts(q.train_texts, config, "cpu", params.batch_size)
    asked = embed_texts(q.paraphrases, config, "cpu", params.batch_size)
    nearest = (asked @ train.T).argmax(axis=1)
    right = [q.train_intents[int(n)] == i for n, i in zip(nearest, q.expected_intents, strict=True)]
    return score(right, [True] * len(right), [True] * len(q.out_of_scope))


def time_100_rows(workdir: Path, encoder: str = TEMPLATE_ENCODER) -> float:
    """Seconds of a whole template run with `encoder` (every step computed) on the first TIMING_ROWS rows of the shop
    FAQ."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.config import get_settings
    from runtime.store import StepCache

    lines = (DATA / "faq.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (workdir / "data" / "rows-100.csv").write_text("".join(lines[: TIMING_ROWS + 1]), encoding="utf-8")
    settings = ["faq.path=data/rows-100.csv", "faq.heldout_path=null"]
    cache = StepCache(get_settings().cache_dir / "steps")
    for step in compile_plan(load_pipeline(workdir / f"faq-{encoder}.yaml", settings)).steps:
        # An AIB_HOME used before may hold them: the time is of a first run (only question embeddings computed
        # before in that AIB_HOME still come from its shared cache; a fresh one, the default, has none).
        cache.discard(step.cache_key)
    return train_served(workdir, "rows-100", [], encoder)[1]


def template_defaults() -> tuple[float, int]:
    """The template's own wrong-answer target and epochs: the tie-breakers of the choice."""
    import yaml

    blocks = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))["blocks"]
    return float(blocks["api"]["params"]["wrong_answer_target"]), int(blocks["classifier"]["params"]["epochs"])


def choose(candidates: Candidates, others: list[str], keep_promise: bool = False) -> tuple[str, int, float]:
    """The (encoder, epochs, target) with the best mean margin over the `others` FAQs; with `keep_promise`, only
    among those whose mean answered-wrong rate there is at most ANSWERED_WRONG_GOAL (the fewest wrong answers when
    none is). Ties go to the template's own defaults."""
    target0, epochs0 = template_defaults()

    def rank(c: tuple[str, int, float]) -> tuple[float, float, bool, float, float]:
        wrong = statistics.mean(candidates[c][name]["answered_wrong_rate"] for name in others)
        margin = statistics.mean(candidates[c][name]["margin"] for name in others)
        excess = round(max(0.0, wrong - ANSWERED_WRONG_GOAL), 6) if keep_promise else 0.0
        return (excess, -round(margin, 6), c[0] != TEMPLATE_ENCODER, abs(c[2] - target0), abs(c[1] - epochs0))

    return min(candidates, key=rank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two FAQs, fewer candidates, the MiniLM encoder")
    parser.add_argument(
        "--without-answers",
        action="store_true",
        help="the classifier learns from the questions alone (classifier.learn_from_answers=false)",
    )
    parser.add_argument("--encoders", default=None, help=f"comma-separated, of {', '.join(ENCODERS)} (default: all; "
                        f"--quick: {QUICK_ENCODER})")  # fmt: skip
    args = parser.parse_args()
    encoders = (args.encoders or (QUICK_ENCODER if args.quick else ",".join(ENCODERS))).split(",")
    if not set(encoders) <= set(ENCODERS):
        raise SystemExit(f"--encoders: choose among {', '.join(ENCODERS)}")
    os.environ.setdefault("AIB_PAYMENTS", "off")  # figures of the models, not of the chain
    if args.without_answers:
        EXTRA_SETTINGS.append("classifier.learn_from_answers=false")

    from runtime.prefect_env import configure_prefect

    configure_prefect()
    from prefect.testing.utilities import prefect_test_harness

    faqs = shipped_faqs()[:QUICK_FAQS] if args.quick else shipped_faqs()
    targets, epochs = (QUICK_TARGETS, QUICK_EPOCHS) if args.quick else (WRONG_ANSWER_TARGETS, EPOCHS)
    target0, epochs0 = template_defaults()  # always a candidate: the choice is compared with them
    targets, epochs = sorted({*targets, target0}), sorted({*epochs, epochs0})
    questions = {f.name: read_questions(f) for f in faqs}
    workdir = Path(tempfile.mkdtemp(prefix="aib-bench-faq-pipeline-"))
    (workdir / "data").mkdir()
    import yaml

    # The template's own time is a figure, whichever encoders are compared (--quick: the one it runs).
    timed = encoders if args.quick else sorted({*encoders, TEMPLATE_ENCODER})
    for enc in timed:  # the template, its encoder block swapped for each encoder measured
        pipeline = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
        pipeline["blocks"]["encoder"]["use"] = ENCODERS[enc]
        (workdir / f"faq-{enc}.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    for f in faqs:  # the user's own folder: the pipeline and their file beside it
        shutil.copyfile(f.train, workdir / "data" / f"{f.name}.csv")

    candidates: Candidates = {}
    results: dict[str, dict[str, Any]] = {}
    with prefect_test_harness(server_startup_timeout=180):
        train_seconds = {enc: time_100_rows(workdir, enc) for enc in timed}
        # Every candidate on every FAQ (each FAQ trained once per encoder and epochs; the threshold set per target).
        for enc in encoders:
            for f in faqs:
                for e in epochs:
                    served, _ = train_served(workdir, f.name, [f"classifier.epochs={e}"], enc)
                    for t in targets:
                        threshold = threshold_at(served.model, t)
                        scored = score_at_threshold(served, questions[f.name], threshold)
                        candidates.setdefault((enc, e, t), {})[f.name] = scored
        # Each FAQ scored with the defaults chosen on the others, as served (a fresh export with the chosen target).
        for f in faqs:
            enc, e, t = choose(candidates, [g.name for g in faqs if g is not f])
            served, _ = train_served(workdir, f.name, [f"classifier.epochs={e}", f"api.wrong_answer_target={t}"], enc)
            results[f.name] = {
                "encoder": enc, "epochs": e, "target": t, "threshold": served.predictor.threshold,
                **score_served(served, questions[f.name]), "baseline": nearest_neighbour(questions[f.name]),
            }  # fmt: skip
            # The choice scored each target by service.api's rule on probabilities: the service must agree with it.
            expected = candidates[(enc, e, t)][f.name]
            if any(results[f.name][k] != v for k, v in expected.items()):
                raise SystemExit(f"{f.name}: the served model scored {results[f.name]}, its candidate {expected}")
    shutil.rmtree(workdir, ignore_errors=True)
    report(faqs, questions, candidates, results, train_seconds, args.quick)


def report(
    faqs: list[Faq], questions: dict[str, Questions], candidates: Candidates,
    results: dict[str, dict[str, Any]], train_seconds: dict[str, float], quick: bool,
) -> None:  # fmt: skip
    """Print the tables and the figures."""
    rows = []
    for f in faqs:
        r, q = results[f.name], questions[f.name]
        rows.append(
            [f.name, len(q.answers), len(q.train_texts), len(q.paraphrases), len(q.out_of_scope), r["encoder"],
             r["epochs"],
             r["target"], round(r["threshold"], 3), r["in_scope_accuracy"], r["out_of_scope_rejection"],
             r["off-topic_rejection"], r["near_rejection"], r["answered_wrong_rate"], r["margin"],
             r["baseline"]["in_scope_accuracy"], r["baseline"]["margin"]]
        )  # fmt: skip
    print_table(
        "each FAQ with the defaults chosen on the others, as served" + (" (quick: fewer FAQs and candidates)" if quick
                                                                         else ""),  # fmt: skip
        ["faq", "answers", "rows", "asked", "oos", "encoder", "epochs", "target", "threshold", "in-scope",
         "oos rejected",
         "off-topic", "near", "answered wrong", "margin", "NN in-scope", "NN margin"],
        rows,
    )  # fmt: skip
    print_table(
        "every candidate, mean over all FAQs (the margin is in-scope accuracy minus the out-of-scope answer rate)",
        ["encoder", "epochs", "target", "in-scope", "oos rejected", "answered wrong", "margin", "worst margin",
         "worst wrong"],
        [
            [enc, e, t, *(round(statistics.mean(s[k] for s in by_faq.values()), 4)
                     for k in ("in_scope_accuracy", "out_of_scope_rejection", "answered_wrong_rate", "margin")),
             min(s["margin"] for s in by_faq.values()), max(s["answered_wrong_rate"] for s in by_faq.values())]
            for (enc, e, t), by_faq in sorted(candidates.items())
        ],
    )  # fmt: skip
    # The served models score exactly as their candidates (checked in main), so other rules' leave-one-FAQ-out
    # figures come from the candidates' scores.
    target0, epochs0 = template_defaults()
    rules = {  # rule -> (the prefix of its figures, its choice for the FAQs `others`)
        "best margin (used above)": ("", lambda others: choose(candidates, others)),
        "best margin, ≤ 5 % wrong on the others": (
            "keep_5pct_rule_", lambda others: choose(candidates, others, keep_promise=True)),
    }  # fmt: skip
    own = (TEMPLATE_ENCODER, epochs0, target0)
    if quick and own not in candidates:  # --quick runs MiniLM: the template's settings on it
        own = (QUICK_ENCODER, epochs0, target0)
    if own in candidates:  # --encoders may leave the template's own out
        rules[f"the template's own ({' / '.join(map(str, own))}), not chosen"] = ("template_defaults_", lambda _: own)
    compared = {}
    for rule, (_, pick) in rules.items():
        scored = [candidates[pick([g.name for g in faqs if g is not f])][f.name] for f in faqs]
        compared[rule] = {k: (round(statistics.mean(s[k] for s in scored), 4), min(s[k] for s in scored),
                              max(s[k] for s in scored)) for k in scored[0]}  # fmt: skip
    print_table(
        "rules for choosing the defaults, leave-one-FAQ-out (mean / worst over FAQs)",
        ["rule", "in-scope", "oos rejected", "answered wrong", "margin"],
        [[rule, *(f"{c[k][0]:.3f} / {c[k][2 if k == 'answered_wrong_rate' else 1]:.3f}"
                  for k in ("in_scope_accuracy", "out_of_scope_rejection", "answered_wrong_rate", "margin"))]
         for rule, c in compared.items()],
    )  # fmt: skip
    by_encoder = {k: round(v, 1) for k, v in train_seconds.items()}
    figures: dict[str, Any] = {"quick": quick, "faqs": len(faqs)}
    figures["train_seconds_100_rows"] = by_encoder.get(TEMPLATE_ENCODER, by_encoder[min(by_encoder)])  # --quick
    figures["learn_from_answers"] = not EXTRA_SETTINGS
    figures["train_seconds_100_rows_by_encoder"] = by_encoder
    worst = {"in_scope_accuracy": min, "out_of_scope_rejection": min, "answered_wrong_rate": max, "margin": min}
    for key, pick in worst.items():
        values = [results[f.name][key] for f in faqs]
        figures[f"{key}_mean"], figures[f"{key}_worst"] = round(statistics.mean(values), 4), pick(values)
    for key in ("in_scope_accuracy", "margin"):
        values = [results[f.name]["baseline"][key] for f in faqs]
        figures[f"baseline_{key}_mean"] = round(statistics.mean(values), 4)
        figures[f"baseline_{key}_worst"] = min(values)
    figures["baseline_out_of_scope_answer_rate"] = 1.0
    figures["margin_gain_over_baseline_mean"] = round(figures["margin_mean"] - figures["baseline_margin_mean"], 4)
    figures["beats_baseline_on_every_faq"] = all(results[f.name]["margin"] > results[f.name]["baseline"]["margin"]
                                                 for f in faqs)  # fmt: skip
    for rule, (prefix, _) in rules.items():
        if prefix:
            figures.update({f"{prefix}{k}_mean": compared[rule][k][0] for k in compared[rule]})
    figures["chosen_wrong_answer_target"] = {f.name: results[f.name]["target"] for f in faqs}
    figures["chosen_epochs"] = {f.name: results[f.name]["epochs"] for f in faqs}
    figures["chosen_encoder"] = {f.name: results[f.name]["encoder"] for f in faqs}
    enc_all, e_all, t_all = choose(candidates, [f.name for f in faqs])
    figures["best_target_on_all_faqs"], figures["best_epochs_on_all_faqs"] = t_all, e_all
    figures["best_encoder_on_all_faqs"] = enc_all
    figures["margin_mean_by_encoder"] = {  # each encoder's best candidate over all FAQs (not leave-one-out)
        enc: max(
            round(statistics.mean(s["margin"] for s in by_faq.values()), 4)
            for (c_enc, _e, _t), by_faq in candidates.items()
            if c_enc == enc
        )
        for enc in sorted({c[0] for c in candidates})
    }
    checks = [
        ("in_scope_accuracy", "≥ 0.90", lambda v: v >= 0.90),
        ("out_of_scope_rejection", "≥ 0.80", lambda v: v >= 0.80),
        ("answered_wrong_rate", "≤ 0.05", lambda v: v <= 0.05),
    ]
    print_table(
        "targets (mean and worst over FAQs, leave-one-FAQ-out)",
        ["figure", "mean", "worst", "target", "met (worst)"],
        [[k, figures[f"{k}_mean"], figures[f"{k}_worst"], goal, ok(figures[f"{k}_worst"])] for k, goal, ok in checks]
        + [[f"train_seconds_100_rows ({enc})", round(sec, 1), "", "≤ 60", sec <= 60]
           for enc, sec in train_seconds.items()]
        + [["margin vs nearest neighbour", figures["margin_mean"], figures["margin_worst"],
            f"> {figures['baseline_margin_mean']:.3f}", figures["beats_baseline_on_every_faq"]]],
    )  # fmt: skip
    print_figures(figures)


if __name__ == "__main__":
    main()
