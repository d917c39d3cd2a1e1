"""Resource Allocator: 1,000 pending runs placed on 1k / 10k / 100k providers, against a plain-Python allocator
(one loop over every provider per run, the same rules) measured in the same run.

    python bench/allocator.py           # 1k, 10k and 100k providers
    python bench/allocator.py --quick   # 1k and 10k providers

Providers and runs are random but seeded: tiers, memory, prices, reputations, slots, load, regions and the
datasets each holds (for locality). The target is `seconds_10k_providers_1k_runs` < 1 s.
"""

from __future__ import annotations

import argparse
import random
import time

from common import median, print_figures, print_table


def make(n_providers: int, n_runs: int, seed: int = 0):
    from runtime.allocator import TIERS, Provider, RunRequest

    rng = random.Random(seed)
    datasets = [f"ds-{i}" for i in range(200)]
    regions = ["eu", "us", "asia"]
    providers = [
        Provider(
            id=f"p{i:06d}",
            tier=rng.choice(TIERS),
            memory_gb=rng.choice([8, 16, 24, 48, 80]),
            price_wei_per_s=rng.randrange(10**9, 10**12),
            reputation=rng.random(),
            slots=rng.choice([1, 1, 2, 4]),
            load=rng.choice([0, 0, 1]),
            datasets=frozenset(rng.sample(datasets, rng.randrange(0, 4))),
            region=rng.choice(regions),
            alive=rng.random() > 0.05,
        )
        for i in range(n_providers)
    ]
    runs = [
        RunRequest(
            id=f"run-{j}",
            tier=rng.choice(TIERS[:3]),
            memory_gb=rng.choice([0, 8, 16, 24]),
            estimated_seconds=rng.uniform(60, 3600),
            datasets=frozenset(rng.sample(datasets, 1)),
            data_bytes=rng.randrange(10**6, 10**10),
            storage_region=rng.choice(regions),
            priority=rng.choice([0, 0, 1]),
        )
        for j in range(n_runs)
    ]
    return providers, runs


def plain_python(runs, providers, policy):
    """The same rules, one provider at a time: the baseline the vectorised allocator is compared with."""
    from runtime.allocator import tier_rank

    free = {p.id: p.slots - p.load for p in providers}
    out = {}
    for i in sorted(range(len(runs)), key=lambda i: (-runs[i].priority, i)):
        run, best = runs[i], None
        for p in providers:
            if not (p.alive and p.reputation >= policy.reputation_floor and free[p.id] > 0):
                continue
            if tier_rank(p.tier) < tier_rank(run.tier) or p.memory_gb < run.memory_gb:
                continue
            if run.max_price_wei_per_s is not None and p.price_wei_per_s > run.max_price_wei_per_s:
                continue
            holds, near = run.datasets <= p.datasets, p.region == run.storage_region
            rate = policy.transfer_wei_per_byte_same_region if near else policy.transfer_wei_per_byte_cross_region
            cost = p.price_wei_per_s * run.estimated_seconds + (0 if holds else rate * run.data_bytes)
            busy = 1 - free[p.id] / p.slots
            score = cost / (0.5 + 0.5 * p.reputation) * (1 + policy.load_weight * busy)
            key = (score, not holds, not near, -p.reputation, p.id)
            if best is None or key < best[0]:
                best = (key, p.id)
        out[i] = best[1] if best else None
        if best:
            free[best[1]] -= 1
    return [out[i] for i in range(len(runs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k providers only")
    args = parser.parse_args()
    from runtime.allocator import Policy, allocate

    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows, figures = [], {"quick": args.quick}
    for n in sizes:
        providers, runs = make(n, 1_000)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = allocate(runs, providers)
            times.append(time.perf_counter() - t0)
        placed = sum(a.provider_id is not None for a in result)
        baseline = None
        if n <= 10_000:
            t0 = time.perf_counter()
            plain = plain_python(runs, providers, Policy())
            baseline = time.perf_counter() - t0
            agree = sum(a.provider_id == b for a, b in zip(result, plain, strict=True)) / len(runs)
            figures[f"agreement_with_plain_python_{n // 1000}k"] = round(agree, 4)
        s = median(times)
        rows.append([n, len(runs), placed, round(s, 3), round(baseline, 2) if baseline else "—",
                     f"{baseline / s:.0f}×" if baseline else "—"])  # fmt: skip
        figures[f"seconds_{n // 1000}k_providers_1k_runs"] = round(s, 4)
    print_table(
        "allocating 1,000 pending runs",
        ["providers", "runs", "placed", "seconds", "plain Python s", "speedup"],
        rows,
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
