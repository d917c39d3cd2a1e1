"""Orchestration overhead: a warm Prefect run of a Plan vs calling the same steps directly (same process).

Usage: python bench/orchestration.py [--quick]
Both modes run the same steps with the same database writes and caches; each run trains the classifier afresh
(a new seed) so the work is real, while the encoder's embeddings come from the cache. The Prefect API is
started and warmed before timing. Figure (last line, JSON): overhead_s_per_run = median(prefect) - median(direct).
"""

from __future__ import annotations

import argparse
import time

from common import TEMPLATE, median, print_figures, print_table

PIPELINE_STEPS = ["faq", "encoder", "classifier"]  # the training part of the template, without export


def timed_run(engine: str, seed: int) -> float:
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.db import session_factory
    from runtime.runner import execute_run
    from runtime.runs import create_run

    pipeline = load_pipeline(TEMPLATE, [f"classifier.seed={seed}"])
    # Drop the export step: it costs seconds of ONNX work that is identical in both modes and only adds noise.
    pipeline.nodes.pop("api")
    pipeline.edges = [e for e in pipeline.edges if e.dst != "api"]
    plan = compile_plan(pipeline)
    with session_factory()() as s:
        run_id = create_run(s, pipeline, plan).id
    start = time.perf_counter()
    execute_run(run_id, pipeline, plan, engine=engine)  # type: ignore[arg-type]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute)")
    args = parser.parse_args()
    reps = 4 if args.quick else 12
    base_seed = time.time_ns() % 10**6

    t = time.perf_counter()
    timed_run("prefect", base_seed)  # starts the ephemeral Prefect API, loads MiniLM, fills the embedding cache
    cold = time.perf_counter() - t
    timed_run("direct", base_seed + 1)
    times: dict[str, list[float]] = {"direct": [], "prefect": []}
    for i in range(reps):  # interleaved, so drift in machine load hits both modes alike
        for engine in ("direct", "prefect"):
            times[engine].append(timed_run(engine, base_seed + 2 + 2 * i + (engine == "prefect")))
    d, p = median(times["direct"]), median(times["prefect"])
    print_table(
        f"orchestration overhead ({reps} interleaved runs each; steps: {', '.join(PIPELINE_STEPS)})",
        ["mode", "median s", "min s", "max s"],
        [
            ["direct calls", d, min(times["direct"]), max(times["direct"])],
            ["Prefect flow (warm)", p, min(times["prefect"]), max(times["prefect"])],
        ],
    )
    print(f"first Prefect run (API start + model load): {cold:.1f} s")
    print_figures(
        {
            "overhead_s_per_run": round(p - d, 3),
            "prefect_s_per_run": round(p, 3),
            "direct_s_per_run": round(d, 3),
            "prefect_vs_direct": round(p / d, 3),
            "first_run_s": round(cold, 1),
            "runs_per_mode": reps,
            "quick": args.quick,
        }
    )


if __name__ == "__main__":
    main()
