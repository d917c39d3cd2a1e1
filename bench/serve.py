"""Serving throughput: HTTP (auth + metering) at concurrency 1/8/32 beside in-process onnxruntime and torch.

Usage: python bench/serve.py [--quick]
Figures (last line, JSON): onnx_vs_torch_throughput (batch 1), http_overhead_ms_p50, per-concurrency rps and
p50, errors_5xx, usage_records_match (usage records written == successful responses), and the cost of the usage
writer's synchronous=FULL commits against NORMAL (usage_commit_full_vs_normal).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

from common import TEMPLATE, median, percentile, print_figures, print_table, train_template

QUESTIONS = [
    "Where is my order?",
    "How do I reset my password?",
    "Can I pay with PayPal?",
    "What is your return policy?",
    "How much is shipping?",
    "When are you open on Sunday?",
    "I want to talk to a person",
    "Do gift cards expire?",
]


def time_calls(fn, n: int) -> list[float]:
    """Latency in seconds of `n` sequential calls of fn(i)."""
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def in_process(service_id: str, n: int) -> dict[str, list[float]]:
    """Batch-1 latencies of onnxruntime (the served predictor) and torch eager (the training-time model)."""
    import torch

    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.bundle import load_bundle
    from runtime.config import get_settings
    from runtime.db import Service, session_factory
    from runtime.store import StepCache

    with session_factory()() as s:
        bundle_dir = s.get(Service, service_id).bundle_dir
    predictor = load_bundle(bundle_dir)
    plan = compile_plan(load_pipeline(TEMPLATE))
    model = StepCache(get_settings().cache_dir / "steps").get(plan.step("classifier").cache_key)["model"]
    module = model.torch_module("cpu")
    tok = predictor.tokenizer  # the same tokenizer for both paths: only inference differs

    def torch_call(i: int) -> None:
        enc = tok.encode_batch([QUESTIONS[i % len(QUESTIONS)]])
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        with torch.inference_mode():
            module(ids, mask)

    def onnx_call(i: int) -> None:
        predictor.predict([{"text": QUESTIONS[i % len(QUESTIONS)]}])

    for fn in (torch_call, onnx_call):  # warm-up
        time_calls(fn, 20)
    return {"torch": time_calls(torch_call, n), "onnx": time_calls(onnx_call, n)}


def http_load(port: int, key: str, concurrency: int, total: int) -> dict[str, object]:
    """`total` requests over `concurrency` keep-alive connections; latencies and status counts."""
    latencies: list[float] = []
    server_ms: list[tuple[float, float]] = []  # (inference, metering) from the Server-Timing header
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    per_worker = total // concurrency
    body = [json.dumps({"text": q}) for q in QUESTIONS]
    headers = {"Content-Type": "application/json", "X-API-Key": key}

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, timing, codes = [], [], {}
        for i in range(per_worker):
            t = time.perf_counter()
            conn.request("POST", "/v1/predict", body=body[(w + i) % len(body)], headers=headers)
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            parts = dict(p.strip().split(";dur=") for p in (r.getheader("Server-Timing") or "").split(",") if p)
            if parts:
                timing.append((float(parts["inference"]), float(parts["metering"])))
            codes[r.status] = codes.get(r.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            server_ms.extend(timing)
            for c, k in codes.items():
                statuses[c] = statuses.get(c, 0) + k

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "rps": len(latencies) / wall, "server_ms": server_ms}


def commit_cost(n: int) -> dict[str, list[float]]:
    """Seconds per usage commit of one record (what a call waits for at concurrency 1), on a SQLite database of its
    own, with synchronous=FULL (the usage writer's: an answered call survives a power cut) and NORMAL (the rest of
    the app's, and the writer's before)."""
    import tempfile
    from pathlib import Path

    from runtime.db import Run, Service, get_engine, session_factory, utcnow
    from runtime.metering import _insert_once

    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='aib-bench-usage-')) / 'usage.db'}"
    with session_factory(url).begin() as s:
        s.add(Run(id="run-b", name="b", status="succeeded", pipeline_yaml="", pipeline_hash="0" * 64,
                  plan_hash="0" * 64, quote_wei=0, plan={}))  # fmt: skip
        s.flush()
        s.add(Service(id="svc-b", run_id="run-b", name="b", bundle_dir="", plan_hash="0" * 64, block_id="service.api",
                      version="1.0.0", provider="0x" + "11" * 20, call_price_wei=1000))  # fmt: skip
    out: dict[str, list[float]] = {}
    with get_engine(url).connect() as conn:
        for mode in ("NORMAL", "FULL", "NORMAL", "FULL"):  # interleaved: drift of the disk cache hits both
            conn.exec_driver_sql(f"PRAGMA synchronous={mode}")
            conn.commit()
            for i in range(n // 2):
                row = {"bill_key": f"call:{mode}:{i}:{time.perf_counter_ns()}", "service_id": "svc-b",
                       "block_id": "service.api", "version": "1.0.0", "provider": "0x" + "11" * 20, "quantity": 1,
                       "unit": "call", "amount_wei": 1, "created_at": utcnow()}  # fmt: skip
                t = time.perf_counter()
                with conn.begin():
                    conn.execute(_insert_once("sqlite"), [row])
                out.setdefault(mode, []).append(time.perf_counter() - t)
    return out


def usage_count(service_id: str) -> int:
    from sqlalchemy import func, select

    from runtime.db import Usage, session_factory

    with session_factory()() as s:
        return s.scalar(select(func.count()).select_from(Usage).where(Usage.service_id == service_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (under a minute once trained)")
    args = parser.parse_args()
    n_inproc = 200 if args.quick else 1000
    per_level = {1: 150, 8: 160, 32: 320} if args.quick else {1: 600, 8: 800, 32: 1600}

    summary = train_template()
    service_id = summary["service_id"]
    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.processes import free_port

    with session_factory()() as s:
        key, _ = create_key(s, service_id)

    lat = in_process(service_id, n_inproc)
    commits = commit_cost(200 if args.quick else 1000)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "serve", service_id, "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/health")
                c.getresponse().read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: {server.stderr.read().decode()}") from None
                time.sleep(0.2)
        http_load(port, key, 1, 50)  # warm-up
        before = usage_count(service_id)
        results = {c: http_load(port, key, c, n) for c, n in per_level.items()}
        time.sleep(0.2)
        after = usage_count(service_id)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)

    torch_p50, onnx_p50 = median(lat["torch"]), median(lat["onnx"])
    rows = [
        ["torch eager (in-process)", 1, 1 / torch_p50, torch_p50 * 1e3, percentile(lat["torch"], 0.99) * 1e3],
        ["onnxruntime (in-process)", 1, 1 / onnx_p50, onnx_p50 * 1e3, percentile(lat["onnx"], 0.99) * 1e3],
    ]
    ok = 0
    errors_5xx = 0
    figures: dict[str, object] = {}
    for c, r in results.items():
        p50 = median(r["latencies"]) * 1e3
        rows.append([f"HTTP + auth + metering (c={c})", c, r["rps"], p50, percentile(r["latencies"], 0.99) * 1e3])
        ok += r["statuses"].get(200, 0)
        errors_5xx += sum(k for code, k in r["statuses"].items() if code >= 500)
        figures[f"http_rps_c{c}"] = round(r["rps"], 1)
        figures[f"http_p50_ms_c{c}"] = round(p50, 3)
    print_table(
        "serving, batch 1 (2-core CPU unless stated)", ["path", "concurrency", "req/s", "p50 ms", "p99 ms"], rows
    )
    http_p50 = median(results[1]["latencies"]) * 1e3
    server_inference = median([t[0] for t in results[1]["server_ms"]])
    server_metering = median([t[1] for t in results[1]["server_ms"]])
    print(
        f"c=1 inside the server (p50): model {server_inference:.2f} ms, metering {server_metering:.2f} ms; "
        f"HTTP stack and client {http_p50 - server_inference - server_metering:.2f} ms"
    )
    full_ms, normal_ms = median(commits["FULL"]) * 1e3, median(commits["NORMAL"]) * 1e3
    print(
        f"usage commit of one record (p50): synchronous=FULL {full_ms:.3f} ms, NORMAL {normal_ms:.3f} ms "
        f"({full_ms / normal_ms:.2f}x); every served call waits for one (or shares it under load)"
    )
    figures.update(
        {
            "usage_commit_ms_full_p50": round(full_ms, 3),
            "usage_commit_ms_normal_p50": round(normal_ms, 3),
            "usage_commit_full_vs_normal": round(full_ms / normal_ms, 3),
            "onnx_vs_torch_throughput": round(torch_p50 / onnx_p50, 3),
            "http_overhead_ms_p50": round(http_p50 - onnx_p50 * 1e3, 3),
            "inproc_onnx_p50_ms": round(onnx_p50 * 1e3, 3),
            "inproc_torch_p50_ms": round(torch_p50 * 1e3, 3),
            "server_inference_ms_p50": round(server_inference, 3),
            "server_metering_ms_p50": round(server_metering, 3),
            "requests_total": sum(per_level.values()),
            "responses_200": ok,
            "errors_5xx": errors_5xx,
            "usage_records_written": after - before,
            "usage_records_match": (after - before) == ok,
            "quick": args.quick,
        }
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
