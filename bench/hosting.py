"""A service answered on a provider's machine through the coordinator's gateway vs the same service served directly.

A real `aib server start` (the coordinator API), a real `aib provider serve` with an AIB_HOME of its own, and
two `aib serve` processes of the same faq-chatbot-fast service on this machine: one plain, one `--on-providers` (the
gateway: API key, metering, then a hop to the host). Latency (sequential calls) and throughput (8 connections) of
both, in interleaved rounds. Usage: python bench/hosting.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ROOT, median, percentile, print_figures, print_table

AIB = [sys.executable, "-m", "builder.cli"]
QUESTIONS = ["Where is my order?", "How do I reset my password?", "Can I pay with PayPal?", "How much is shipping?"]


def env(home: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    e.update({"AIB_HOME": str(home), "AIB_PAYMENTS": "off", "HF_HUB_OFFLINE": "1"})
    return e


def call(port: int, key: str, conn: http.client.HTTPConnection | None = None, i: int = 0) -> tuple[float, str]:
    """One call: (seconds, who served it)."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"text": QUESTIONS[i % len(QUESTIONS)]})
    t = time.perf_counter()
    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json", "X-API-Key": key})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit(f"a call answered HTTP {r.status}")
    return time.perf_counter() - t, r.getheader("X-Served-By") or "direct"


def sequential(port: int, key: str, n: int) -> tuple[list[float], dict[str, int]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat, who = [], {}
    for i in range(n):
        s, by = call(port, key, conn, i)
        lat.append(s)
        who[by] = who.get(by, 0) + 1
    conn.close()
    return lat, who


def concurrent(port: int, key: str, connections: int, per_connection: int) -> float:
    """Requests per second over `connections` keep-alive connections."""

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(per_connection):
            call(port, key, conn, w + i)
        conn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return connections * per_connection / (time.perf_counter() - start)


def wait_up(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            c.getresponse().read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (for CI)")
    args = ap.parse_args()
    rounds, n_seq, per_conn = (2, 40, 10) if args.quick else (4, 250, 40)
    out = Path(os.environ["AIB_HOME"]) / "hosting"  # (bench/common: bench/out/home unless set)
    shutil.rmtree(out, ignore_errors=True)
    coord, host_home = out / "coordinator", out / "host"
    for home in (coord, host_home):
        home.mkdir(parents=True, mode=0o700)
    os.environ.update(env(coord))
    from common import train_template

    from runtime.db import Usage, session_factory
    from runtime.keys import create_key
    from runtime.processes import free_port

    # The server starts while the service trains here: neither needs the other, and nothing is measured yet.
    starting = subprocess.Popen([*AIB, "server", "start", "--port", str(free_port()), "--coordinator-port",
                                 str(free_port()), "--json"], env=env(coord), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    procs: list[subprocess.Popen] = []

    def spawn(home: Path, *argv: str) -> subprocess.Popen:
        p = subprocess.Popen([*AIB, *argv], env=env(home), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        procs.append(p)
        return p

    try:
        service_id = train_template()["service_id"]
        with session_factory()() as s:
            key, _ = create_key(s, service_id)
        started, failed = starting.communicate(timeout=300)
        if starting.returncode != 0:
            raise SystemExit(f"aib server start failed ({starting.returncode}):\n{failed[-3000:]}")
        server = json.loads(started)
        host_port, direct_port, gw_port = free_port(), free_port(), free_port()
        host = spawn(host_home, "provider", "serve", "--coordinator", server["coordinator_url"],
                     "--price-per-1k-calls", "0.002", "--host", "127.0.0.1", "--port", str(host_port))  # fmt: skip
        direct = spawn(coord, "serve", service_id, "--port", str(direct_port))
        gateway = spawn(coord, "serve", service_id, "--port", str(gw_port), "--on-providers", "--audit-rate", "0")
        wait_up(direct_port, direct, "aib serve")
        wait_up(gw_port, gateway, "the gateway")
        deadline = time.monotonic() + 300
        while call(gw_port, key)[1] == "gateway":  # until the host has the bundle loaded and answers
            if host.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the host did not start answering")
            time.sleep(1)
        for port in (direct_port, gw_port):  # warm-up
            sequential(port, key, 20)
        with session_factory()() as s:
            hosted_before = s.query(Usage).filter(Usage.unit == "hosted-call").count()
        lat: dict[str, list[float]] = {"direct": [], "hosted": []}
        rps: dict[str, list[float]] = {"direct": [], "hosted": []}
        served: dict[str, int] = {}
        for _ in range(rounds):  # interleaved: drift of the machine hits both
            for name, port in (("direct", direct_port), ("hosted", gw_port)):
                got, who = sequential(port, key, n_seq)
                lat[name] += got
                rps[name].append(concurrent(port, key, 8, per_conn))
                if name == "hosted":
                    for k, v in who.items():
                        served[k] = served.get(k, 0) + v
        time.sleep(0.5)
        with session_factory()() as s:
            hosted_records = s.query(Usage).filter(Usage.unit == "hosted-call").count() - hosted_before
    finally:
        if starting.poll() is None:  # the training failed: the server is stopped below once it has started
            starting.communicate(timeout=300)
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        subprocess.run([*AIB, "server", "stop"], env=env(coord), cwd=ROOT, capture_output=True, timeout=120)

    by_host = sum(v for k, v in served.items() if k != "gateway")
    d50, h50 = median(lat["direct"]) * 1e3, median(lat["hosted"]) * 1e3
    d_rps, h_rps = median(rps["direct"]), median(rps["hosted"])
    print_table(
        "faq-chatbot-fast (the FAQ bot on MiniLM), one machine (2-core CPU unless stated)",
        ["path", "p50 ms", "p99 ms", "req/s (8 connections)"],
        [["aib serve (direct)", d50, percentile(lat["direct"], 0.99) * 1e3, d_rps],
         ["gateway -> host (--on-providers)", h50, percentile(lat["hosted"], 0.99) * 1e3, h_rps]],
    )  # fmt: skip
    print_figures(
        {
            "quick": args.quick,
            "direct_p50_ms": round(d50, 3),
            "hosted_p50_ms": round(h50, 3),
            "hosted_latency_ratio": round(h50 / d50, 3),
            "hosted_extra_ms_p50": round(h50 - d50, 3),
            "direct_rps_c8": round(d_rps, 1),
            "hosted_rps_c8": round(h_rps, 1),
            "hosted_throughput_ratio": round(h_rps / d_rps, 3),
            "served_by_host": round(by_host / max(1, sum(served.values())), 4),
            # every sequential call the host answered has its record (concurrent ones too: counted, not compared)
            "hosted_records_at_least_host_answers": hosted_records >= by_host,
        }
    )


if __name__ == "__main__":
    main()
