"""The benchmarks keep running: `bench/X.py --quick` ends with one JSON object holding the figures bench/RESULTS.md
reports for X (the names are listed here: RESULTS.md mixes them with prose, and some figures exist only in full
runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# bench -> (figures its --quick run must print, timeout in seconds). Each comment names the RESULTS.md section.
BENCHES: dict[str, tuple[set[str], int]] = {
    # "Resource Allocator" (seconds_100k_providers_1k_runs: full runs only)
    "allocator": (
        {"seconds_10k_providers_1k_runs", "seconds_1k_providers_1k_runs", "agreement_with_plain_python_1k",
         "agreement_with_plain_python_10k"},
        300,
    ),
    # "Digitized-data cache"
    "data_cache": (
        {"cache_speedup", "train_epoch_speedup", "first_build_s", "raw_epoch_s", "shard_epoch_s", "train_epoch_s",
         "clips", "shard_mb"},
        600,
    ),
    # "Why a model is wrong, and a tune"
    "evaluate_tune": (
        {"eval_overhead", "eval_overhead_faq", "eval_overhead_digit", "eval_overhead_lane", "eval_overhead_met",
         "faq_tune_default", "faq_tune_best", "faq_tune_gain", "faq_tune_trials", "faq_tune_pruned",
         "tune_never_worse"},
        600,
    ),
    # "FAQ quality, leave-one-FAQ-out"
    "faq_quality": (
        {"in_scope_accuracy_mean", "in_scope_accuracy_worst", "out_of_scope_rejection_mean",
         "out_of_scope_rejection_worst", "answered_wrong_rate_mean", "answered_wrong_rate_worst",
         "train_seconds_100_rows", "margin_mean", "margin_worst", "baseline_in_scope_accuracy_mean",
         "baseline_in_scope_accuracy_worst", "baseline_out_of_scope_answer_rate", "baseline_margin_mean",
         "baseline_margin_worst", "margin_gain_over_baseline_mean", "beats_baseline_on_every_faq",
         "chosen_wrong_answer_target", "chosen_epochs", "best_target_on_all_faqs", "best_epochs_on_all_faqs", "faqs",
         "keep_5pct_rule_in_scope_accuracy_mean", "keep_5pct_rule_out_of_scope_rejection_mean",
         "keep_5pct_rule_answered_wrong_rate_mean", "keep_5pct_rule_margin_mean",
         "template_defaults_in_scope_accuracy_mean", "template_defaults_out_of_scope_rejection_mean",
         "template_defaults_answered_wrong_rate_mean", "template_defaults_margin_mean"},
        900,
    ),
    # "Provider protocol"
    "provider_protocol": (
        {"transfer_ratio", "shard_ratio", "protocol_overhead", "cache_hit_second_run", "bytes_sent_second_run",
         "raw_wav_bytes"},
        900,
    ),
    # "Services answered on providers' machines"
    "hosting": (
        {"direct_p50_ms", "hosted_p50_ms", "hosted_latency_ratio", "hosted_extra_ms_p50", "direct_rps_c8",
         "hosted_rps_c8", "hosted_throughput_ratio", "served_by_host", "hosted_records_at_least_host_answers"},
        600,
    ),
    # "Orchestration"
    "orchestration": ({"overhead_s_per_run", "direct_s_per_run", "prefect_s_per_run", "first_run_s"}, 900),
    # "Proof-of-Value epochs"
    "rewards": (
        {"close_epoch_gas", "claim_gas", "push_baseline_gas", "operator_gas_ratio_vs_push", "tree_seconds_10k"},
        600,
    ),
    # "Serving"
    "serve": (
        {"onnx_vs_torch_throughput", "http_overhead_ms_p50", "requests_total", "errors_5xx", "usage_records_match",
         "http_rps_c1", "http_rps_c8", "http_rps_c32", "http_p50_ms_c1", "http_p50_ms_c8", "http_p50_ms_c32",
         "server_inference_ms_p50", "server_metering_ms_p50"},
        900,
    ),
    # "Settlement gas" and "Served calls paid in batches" (gas_per_payee_at_100: full runs only)
    "settlement": (
        {"gas_per_payee_at_1", "gas_per_payee_at_10", "settle_gas_0_payees", "transfer_gas_per_record",
         "settle_transactions_per_run", "service_calls_per_batch", "service_batch_transactions",
         "service_batch_gas", "service_batch_vs_transfers"},
        600,
    ),
    # "Speech on voices it never heard" (the mean and worst over seeds, `*_worst`, `*_by_seed`: `--seeds N` runs only)
    "speech_generalise": (
        {"leave_one_engine_out_accuracy", "phone_line_accuracy", "unknown_rejection", "commands_rejected",
         "baseline_leave_one_engine_out_accuracy", "baseline_phone_line_accuracy", "accuracy_gain_over_baseline",
         "personalise_accuracy_k0", "personalise_accuracy_k3", "personalise_accuracy_k10", "personalise_gain",
         "personalise_unknown_rejection_k10_with_other_words", "train_s", "speak_s", "clips"},
        900,
    ),
    # "Every template against its target"
    "templates": (
        {"faq_accuracy", "faq_vs_chance", "digit_accuracy", "digit_vs_chance", "lane_mae", "lane_baseline_mae",
         "lane_ratio", "voice_accuracy", "voice_vs_chance", "faq_seconds", "digit_seconds", "lane_seconds",
         "voice_seconds", "faq_fast_accuracy", "faq_fast_vs_chance", "faq_fast_seconds"},
        1200,
    ),
    # "Workbench first render"
    "ui": (
        {"render_s_templates", "render_s_builder", "render_s_marketplace", "render_s_runs", "render_s_services",
         "render_s_wallet", "render_s_provide", "bare_render_s", "worst_render_s", "worst_vs_bare"},
        900,
    ),
    # "Verification of untrusted work"
    "verification": (
        {"detection_rate", "detection_rate_analytic", "recompute_overhead", "recompute_overhead_10pct",
         "detection_curve_fake_10pct", "check_rate", "segments"},
        600,
    ),
}  # fmt: skip


def test_every_bench_is_covered():
    assert set(BENCHES) == {p.stem for p in (ROOT / "bench").glob("*.py")} - {"__init__", "common"}


@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_quick_bench_prints_its_figures(bench: str, tmp_path: Path):
    figures_named, timeout = BENCHES[bench]
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}  # not this session's
    # Its scratch files in a short folder of its own: Chromium's profile socket must fit in 107 bytes of path, and
    # pytest's per-test folders leave no room for it from the tenth bench on (".../test_quick_bench_prints_its_fi10").
    scratch = Path(tempfile.mkdtemp(prefix="bq-"))
    env |= {"AIB_HOME": str(tmp_path / "home"), "TMPDIR": str(scratch)}  # its data and scratch files, removed after
    # Torch on one thread, as the other test processes (tests/integration/test_distributed.py): with two on a busy
    # 2-core machine, templates' quick digit-reader CNN took 59 s instead of 1.3 s and its lane pilot 90 s instead of 2.
    env["OMP_NUM_THREADS"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / f"{bench}.py"), "--quick"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:  # a bench's data folder holds gigabytes of bundles (pytest keeps three sessions' tmp_path folders)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(tmp_path / "home", ignore_errors=True)
    assert done.returncode == 0, f"bench/{bench}.py --quick failed:\n{done.stderr[-4000:]}"
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert isinstance(figures, dict), last
    missing = figures_named - figures.keys()
    assert not missing, f"bench/{bench}.py --quick no longer prints {sorted(missing)}: {last}"
    assert figures.get("quick") is True
