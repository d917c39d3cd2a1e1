"""Verification of untrusted work: cheating providers against spot-check replays, measured next to the analytic
detection curve, and the recompute overhead of checking against the honest training time of the same run.

    python bench/verification.py           # 1,000 segments, 2,000 verifier secrets per cell
    python bench/verification.py --quick   # 600 segments, 400 secrets per cell, only the 10 %-faked provider

A classifier with two hidden layers of 256 trains in segments of eight optimiser steps
(runtime/verification.py). The operating point is a check rate of 5 %. Cheaters: skip
training (send the previous weights), send random weights, add noise to honest weights, or fake a
fraction of segments. Each segment of each cheater's log is replayed once to know which ones are bad
(the replay is deterministic, so every verifier sample sees the same result); each verifier secret then
picks its sample, and the cheater is caught when the sample holds a bad segment. A subset of secrets is
also run through the full `verify()` to confirm it reaches the same verdicts.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from common import print_figures, print_table
from torch import nn

EPOCHS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer segments and secrets")
    args = parser.parse_args()
    from runtime.verification import (
        SegmentedTrainer,
        WorkLog,
        choose_segments,
        detection_probability,
        max_abs_diff,
        train_honestly,
        verify,
    )

    torch.set_num_threads(1)
    # 4 epochs of batches of 25, segments of 8 steps: 600 segments (quick) or 1,000.
    samples = 30_000 if args.quick else 50_000
    secrets = 400 if args.quick else 2_000

    def make_trainer() -> SegmentedTrainer:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(samples, 32, generator=gen)
        y = (x[:, :4].sum(1) > 0).long() + (x[:, 4] > 0.8).long()
        net = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 256), nn.ReLU(),
                            nn.Linear(256, 3))  # fmt: skip
        return SegmentedTrainer(net, torch.optim.Adam(net.parameters(), 1e-3), x, y, batch_size=25, seed=0,
                                segment_steps=8)  # fmt: skip

    n = make_trainer().n_segments(EPOCHS)
    honest = train_honestly(make_trainer(), EPOCHS)
    rng = np.random.default_rng(0)

    def cheat(kind: str, fraction: float) -> tuple[WorkLog, set[int]]:
        faked = set(rng.choice(n, size=max(1, round(fraction * n)), replace=False).tolist())
        t = make_trainer()
        checkpoints = [t.state()]
        for k in range(n):
            if k in faked and kind == "random":
                with torch.no_grad():
                    for p in t.module.parameters():
                        p.copy_(torch.randn_like(p))
            elif k in faked and kind == "noise":
                t.run_segment(k, EPOCHS)
                with torch.no_grad():
                    for p in t.module.parameters():
                        p.add_(torch.randn_like(p) * 1e-3)
            elif k not in faked:
                t.run_segment(k, EPOCHS)
            checkpoints.append(t.state())
        return WorkLog(checkpoints), faked

    def bad_segments(log: WorkLog) -> np.ndarray:
        t = make_trainer()
        bad = np.zeros(n, bool)
        for k in range(n):
            t.load(log.checkpoints[k])
            t.run_segment(k, EPOCHS)
            bad[k] = not max_abs_diff(t.module, log.checkpoints[k + 1]) <= 1e-4
        return bad

    # Honest work: never flagged, and what checking it costs.
    assert not bad_segments(honest).any(), "an honest log failed its own replay"
    overhead = {}
    for rate in (0.05, 0.1):
        t0 = time.perf_counter()
        runs = 5
        for _ in range(runs):
            verdict = verify(make_trainer, honest, EPOCHS, rate, os.urandom(16))
            assert verdict.ok, verdict.reason
        overhead[rate] = (time.perf_counter() - t0) / runs / honest.seconds

    rates = [0.01, 0.02, 0.05, 0.1, 0.2]
    # --quick keeps the case its figures come from (10 % of segments faked); each case costs a cheat's training and
    # a replay of all its segments.
    fractions = (0.1,) if args.quick else (0.01, 0.05, 0.1, 0.2)
    cases = [] if args.quick else [("skip training", "skip", 1.0), ("random weights", "random", 1.0),
                                   ("noise 1e-3", "noise", 1.0)]  # fmt: skip
    cases += [(f"fake {int(f * 100)} % of segments", "skip", f) for f in fractions]
    rows, curve, figures = [], {}, {"quick": args.quick, "segments": n}
    for label, kind, fraction in cases:
        log, faked = cheat(kind, fraction)
        bad = bad_segments(log)
        m = int(bad.sum())
        for rate in rates:
            caught = 0
            for s in range(secrets):
                picked = choose_segments(n, rate, log.root, s.to_bytes(8, "big"))
                caught += bool(bad[picked].any()) if picked else 0
            measured = caught / secrets
            analytic = detection_probability(n, m, rate)
            rows.append([label, m, rate, round(measured, 4), round(analytic, 4)])
            if kind == "skip" and fraction == 0.1:  # the target's case: 10 % of segments faked
                curve[rate] = (measured, analytic)
        # The full verifier reaches the same verdicts as the per-segment table (a subset of secrets).
        for s in range(10):
            verdict = verify(make_trainer, log, EPOCHS, 0.1, s.to_bytes(8, "big"))
            picked = choose_segments(n, 0.1, log.root, s.to_bytes(8, "big"))
            assert verdict.ok == (not bad[picked].any()), (label, s)
    print_table(
        f"detection by spot-check rate ({n} segments, {secrets} verifier secrets per cell)",
        ["provider", "bad segments", "check rate", "measured", "analytic 1-(1-p)^m"],
        rows,
    )
    print_table(
        "recompute overhead (verifier seconds / honest training seconds)",
        ["check rate", "overhead"],
        [[r, round(o, 3)] for r, o in overhead.items()],
    )
    figures["check_rate"] = 0.05
    figures["detection_rate"] = round(curve[0.05][0], 4)
    figures["detection_rate_analytic"] = round(curve[0.05][1], 4)
    figures["recompute_overhead"] = round(overhead[0.05], 4)
    figures["recompute_overhead_10pct"] = round(overhead[0.1], 4)
    figures["detection_curve_fake_10pct"] = {str(r): [round(a, 4), round(b, 4)] for r, (a, b) in curve.items()}
    print_figures(figures)


if __name__ == "__main__":
    main()
