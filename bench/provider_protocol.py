"""The provider protocol's costs on the voice-commands template: bytes a provider is sent vs the raw WAV data,
wall time of a rented run through the protocol vs the same run on local compute (same machine, same run), and the
bytes a provider fetches for a second run on the same data.

A real `aib server start` (prefect server + coordinator API) and a real protocol agent with an AIB_HOME of its own
run here; every run is a real `aib run` process. Usage: python bench/provider_protocol.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT, print_figures, print_table

AIB = [sys.executable, "-m", "builder.cli"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(home: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    e.update({"AIB_HOME": str(home), "AIB_PAYMENTS": "off", "HF_HUB_OFFLINE": "1", "PREFECT_WORKER_QUERY_SECONDS": "1"})
    return e


def aib(home: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    r = subprocess.run([*AIB, *args], capture_output=True, text=True, timeout=timeout, env=env(home), cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"aib {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def timed_run(home: Path, path: Path, sets: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    r = aib(home, "run", str(path), "--json", *sum((["--set", s] for s in sets), []))
    return json.loads(r.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small voice set and two epochs (for CI)")
    args = ap.parse_args()
    OUT = Path(os.environ["AIB_HOME"]) / "provider-protocol"  # (bench/common: bench/out/home unless set)
    shutil.rmtree(OUT, ignore_errors=True)
    coord, prov = OUT / "coordinator", OUT / "provider"
    for home in (coord, prov):
        home.mkdir(parents=True, mode=0o700)
    os.environ["AIB_HOME"] = str(coord)
    templates = shutil.copytree(ROOT / "templates", OUT / "templates", ignore=shutil.ignore_patterns("*.md"))
    pipeline = yaml.safe_load((templates / "voice-commands.yaml").read_text())
    local = dict(pipeline, compute="compute.local@1.0.0")
    rented = dict(pipeline, compute={"use": "compute.rented@1.0.0", "params": {"tier": "cpu"}})
    (templates / "voice-local.yaml").write_text(yaml.safe_dump(local))
    (templates / "voice-rented.yaml").write_text(yaml.safe_dump(rented))
    small = ["speech.voices=4", "speech.speeds=[160]", "speech.pitches=[50]", "kws.epochs=2", "kws.channels=8"]
    sets = small if args.quick else []

    server = json.loads(aib(coord, "server", "start", "--port", str(free_port()), "--coordinator-port",
                            str(free_port()), "--json").stdout)  # fmt: skip
    agent = subprocess.Popen([*AIB, "provider", "start", "--coordinator", server["coordinator_url"], "--tier", "cpu",
                              "--price", "0.36", "--name", "bench"], env=env(prov), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        from runtime.db import Lease, ProviderRow, session_factory
        from runtime.providers import is_online

        deadline = time.monotonic() + 180
        while True:
            with session_factory()() as s:
                if any(is_online(r) for r in s.query(ProviderRow).filter(ProviderRow.via == "api")):
                    break
            if time.monotonic() > deadline or agent.poll() is not None:
                raise SystemExit("the provider agent did not come online")
            time.sleep(1)

        # The data and feature steps are computed (and cached) once, here, before anything is timed.
        timed_run(coord, templates / "voice-local.yaml", [*sets, "kws.seed=100", "kws.epochs=1"])
        local_summary, local_s = timed_run(coord, templates / "voice-local.yaml", [*sets, "kws.seed=1"])
        first, rented_s = timed_run(coord, templates / "voice-rented.yaml", [*sets, "kws.seed=2"])
        second, rented_again_s = timed_run(coord, templates / "voice-rented.yaml", [*sets, "kws.seed=3"])
        for summary in (first, second):
            assert summary["status"] == "succeeded", summary.get("error")
            assert summary["metrics"]["verification"]["kws"]["ok"] is True

        from builder.pipeline import load_pipeline
        from builder.plan import compile_plan
        from runtime.config import get_settings
        from runtime.store import StepCache

        plan = compile_plan(load_pipeline(templates / "voice-local.yaml", [*sets, "kws.seed=1"]))
        clips = StepCache(get_settings().cache_dir / "steps").get(plan.step("speech").cache_key)["clips"]
        n_clips = len(clips.train_x) + len(clips.test_x)
        wav_bytes = n_clips * 44 + 2 * (clips.train_x.size + clips.test_x.size)  # 16-bit PCM WAV files
        with session_factory()() as s:
            [lease1] = s.query(Lease).filter(Lease.run_id == first["run_id"]).all()
            [lease2] = s.query(Lease).filter(Lease.run_id == second["run_id"]).all()

        def data_bytes(lease: Lease) -> int:
            """Sealed bytes of the data shards (x, y, ex, ey) among what the lease was sent."""
            shards = {lease.job["inputs"][n]["sealed_sha256"] for n in ("x", "y", "ex", "ey")}
            return sum(b for digest, b in (lease.served or {}).items() if digest in shards)

        figures = {
            "quick": args.quick,
            "transfer_ratio": round(lease1.served_bytes / wav_bytes, 4),
            "shard_ratio": round(data_bytes(lease1) / wav_bytes, 4),
            "shard_bytes_first_run": data_bytes(lease1),
            "bytes_sent_first_run": lease1.served_bytes,
            "raw_wav_bytes": wav_bytes,
            "clips": n_clips,
            "protocol_overhead": round(rented_s / local_s, 3),
            "protocol_overhead_second_run": round(rented_again_s / local_s, 3),
            "local_run_s": round(local_s, 2),
            "rented_run_s": round(rented_s, 2),
            "rented_again_s": round(rented_again_s, 2),
            "cache_hit_second_run": data_bytes(lease2),
            "bytes_sent_second_run": lease2.served_bytes,
            "accuracy_local": local_summary["metrics"].get("accuracy"),
            "accuracy_rented": first["metrics"].get("accuracy"),
        }
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGTERM)
            try:
                agent.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
        subprocess.run([*AIB, "server", "stop"], env=env(coord), cwd=ROOT, capture_output=True, timeout=120)

    print_table(
        f"Provider protocol — voice-commands ({'quick' if args.quick else 'template defaults'}), {n_clips} clips",
        ["figure", "value"],
        [[k, v] for k, v in figures.items()],
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
