"""Distributed mode for real: `aib server start` (a real `prefect server`), two provider agents with real Prefect
workers on loopback, and `aib run` placing a pipeline on the provider the Resource Allocator picks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import TEMPLATES, free_port

AIB = [sys.executable, "-m", "builder.cli"]
# Epochs of the interrupted trainings: long enough that stopping one mid-way is never a race (about 10 ms each).
EPOCHS = 200
# For the processes of a test where a provider vanishes: a heartbeat every 2 s, so a silent offer is offline after
# 12 s and its run given up 6 s later (runtime/providers.py; 30 s and 15 s by default): the same detection, sooner.
QUICK_HEARTBEATS = {"AIB_HEARTBEAT_SECONDS": "2"}


def env() -> dict[str, str]:
    e = os.environ.copy()
    e.pop("PREFECT_API_URL", None)  # the session's test server is not the distributed one
    e["AIB_PAYMENTS"] = "off"  # figures of placement here; paid runs are covered by the chain tests
    # Torch on one thread in every process of these tests: their model is a small head whose steps are far too small
    # to share out, and on a busy machine two threads waiting on each other made an epoch 20x slower (measured).
    e["OMP_NUM_THREADS"] = "1"
    return e


def aib(*args: str, timeout: float = 300, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*AIB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**env(), **(extra_env or {})})  # fmt: skip


def spawn(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*AIB, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env(), **(extra_env or {})},
        start_new_session=True,
    )  # fmt: skip


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def providers_listed() -> list[dict]:
    """What `aib providers list --json` lists, read through the same service in this process (no CLI start-up
    per poll)."""
    from runtime.db import session_factory
    from runtime.providers import offer_rows

    with session_factory()() as s:
        return offer_rows(s)


def workers_online(api_url: str, pool: str, names: set[str]) -> bool:
    """Whether a Prefect worker of each name in `names` has registered with work pool `pool` and is online (an
    agent names its worker after its offer)."""
    from runtime.distributed import prefect_auth_string

    auth = tuple(prefect_auth_string().split(":", 1))  # the server's API is protected
    workers = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=10, auth=auth)
    workers = workers.raise_for_status().json()
    return names <= {w["name"] for w in workers if w["status"] == "ONLINE"}


@contextmanager
def agents_online(api_url: str, *offers: tuple[str, str], envs: dict[str, dict[str, str]] | None = None):
    """Provider agents (name, price per hour) on this machine, yielded once all are online and their Prefect workers
    are too: ({name: offer}, {name: agent process}). `envs`: more environment for some agents (by name). Their
    workers look for work every second (5 s by default), as the protocol tests' agents do."""
    agents = {n: spawn("provider", "start", "--tier", "cpu", "--price", p, "--name", n,
                       extra_env={"PREFECT_WORKER_QUERY_SECONDS": "1", **(envs or {}).get(n, {})})
              for n, p in offers}  # fmt: skip
    try:

        def online():
            named = {r["name"]: r for r in providers_listed() if r["online"] and r["name"] in agents}
            return named if len(named) == len(agents) else None

        listed = wait_for(online, 90, f"{len(agents)} online providers")
        ids = {offer["id"] for offer in listed.values()}
        wait_for(lambda: workers_online(api_url, "cpu", ids), 90, "each agent's Prefect worker online in its pool")
        yield listed, agents
    finally:
        for a in agents.values():
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGTERM)
        for a in agents.values():
            try:
                a.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(a.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server():
    started = aib("server", "start", "--port", str(free_port()), "--json", timeout=240)
    assert started.returncode == 0, started.stderr
    yield json.loads(started.stdout)
    aib("server", "stop")


def ancestors(pid: int) -> list[int]:
    """`pid` and every process above it, up to init (read from /proc)."""
    lineage = [pid]
    while pid > 1:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, then the parent's pid
        lineage.append(pid)
    return lineage


def running_pid(submitter: subprocess.Popen, provider_id: str) -> int | None:
    """The process of the run now running on `provider_id` (None while there is none); fails if `aib run` ended."""
    from runtime.db import Run, session_factory

    assert submitter.poll() is None, submitter.stdout.read()
    with session_factory()() as s:
        run = s.query(Run).filter(Run.provider_id == provider_id, Run.status == "running").one_or_none()
        return run.pid if run is not None else None


def test_a_machine_without_a_cuda_gpu_cannot_offer_a_gpu_tier(server):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the refusal is for machines without one")
    gpu = aib("provider", "start", "--tier", "gpu-small", "--price", "1")
    assert gpu.returncode == 2
    assert "tier gpu-small needs a CUDA GPU with at least 8 GB; this machine has none" in gpu.stderr


def test_a_run_goes_to_the_cheaper_provider_and_runs_in_its_worker(server, tmp_path):
    from runtime.db import Usage, session_factory

    bad = aib("provider", "start", "--tier", "cpu", "--price", "free")
    assert bad.returncode == 2 and "--price: expected an amount like '0.5 AIC'" in bad.stderr
    unknown = aib("provider", "start", "--tier", "tpu", "--price", "1")
    assert unknown.returncode == 2 and "unknown compute tier 'tpu'" in unknown.stderr

    with agents_online(server["api_url"], ("cheap", "0.36"), ("dear", "0.72")) as (offers, agents):
        path = rented_copy(tmp_path)
        submitter = spawn("run", str(path), "--set", "classifier.epochs=5", "--json")
        cheap = offers["cheap"]["id"]
        pid = wait_for(lambda: running_pid(submitter, cheap), 240, "the run to be running on the cheap provider")
        # The step runs in the flow-run process that the cheap agent's Prefect worker started: below that agent.
        assert agents["cheap"].pid in ancestors(pid), (ancestors(pid), {n: a.pid for n, a in agents.items()})
        out, _ = submitter.communicate(timeout=400)
        assert submitter.returncode == 0, out
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "succeeded" and summary["provider_id"] == cheap
        assert summary["allocation"].startswith(f"{offers['cheap']['id']} (cpu, ")
        assert "of 2 eligible provider(s)" in summary["allocation"]
        with session_factory()() as s:
            compute = [u for u in s.query(Usage).filter(Usage.run_id == summary["run_id"])
                       if u.block_id == "compute.rented"]  # fmt: skip
        assert compute and {u.provider for u in compute} == {cheap}  # billed at its own price
        checked = summary["metrics"]["verification"]["classifier"]
        assert checked["ok"] is True and checked["epochs"] == 5 and checked["checked"]  # replayed here: holds up
        assert checked["max_abs_diff"] == 0.0

        again = aib("run", str(path), "--set", "classifier.epochs=1", "--json", timeout=200)
        assert again.returncode == 0 and json.loads(again.stdout)["provider_id"] == offers["cheap"]["id"]  # free again
        big = yaml.safe_load(path.read_text())
        big["compute"]["params"]["tier"] = "gpu-large"
        (path.parent / "faq-big.yaml").write_text(yaml.safe_dump(big))
        refused = aib("run", str(path.parent / "faq-big.yaml"), "--json", timeout=120)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"] == "no provider: no online provider offers tier gpu-large or above"
        missing_evidence_fails_verification(path, summary["run_id"], offers["cheap"]["id"])
        cheat_and_get_caught(path, summary["run_id"], offers["cheap"]["id"])
    listed = json.loads(aib("providers", "list", "--json").stdout)
    assert not [r for r in listed if r["name"] in ("cheap", "dear") and r["online"]]  # stopped agents are offline


def rented_copy(tmp_path, tier: str = "cpu"):
    src = shutil.copytree(TEMPLATES, tmp_path / "t", ignore=shutil.ignore_patterns("*.md"))
    pipeline = yaml.safe_load((src / "faq-chatbot-fast.yaml").read_text())
    pipeline["compute"] = {"use": "compute.rented@1.0.0", "params": {"tier": tier}}
    path = src / "faq-rented.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def checkpoint_file(path, overrides) -> Path:
    """Where the training step of pipeline `path` (with `overrides`) keeps its last checkpoint."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.config import get_settings

    key = compile_plan(load_pipeline(path, overrides)).step("classifier").cache_key
    return get_settings().cache_dir / "work" / key / "checkpoint.pt"


def checkpoint_epoch(checkpoint: Path) -> int:
    """The epoch a training checkpoint was written after (0 while there is none)."""
    import torch

    try:
        return int(torch.load(checkpoint, weights_only=True)["epoch"])
    except FileNotFoundError:
        return 0


def stopped_mid_training(submitter: subprocess.Popen, provider_id: str, checkpoint: Path, epoch: int = 2) -> int:
    """The process of the run on `provider_id`, stopped (SIGSTOP) as soon as its training checkpoint reaches `epoch`.

    An epoch of the suite's training takes milliseconds on a quiet machine (the whole step well under a second), so
    the test watches at that pace and holds the run still itself: whatever it then does to the provider lands in
    the middle of the training, however fast or loaded the machine is. It is stopped while this test holds the app
    database's write lock, so never in the middle of a write of its own: the database stays free for others (the
    provider agent records the preemption in it) while it is held.
    """
    import sqlite3

    from runtime.config import get_settings

    pid = wait_for(lambda: running_pid(submitter, provider_id), 240, f"the run to be running on {provider_id}")
    deadline = time.monotonic() + 240
    while checkpoint_epoch(checkpoint) < epoch:
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} on {provider_id}"
        time.sleep(0.005)
    db = sqlite3.connect(get_settings().database_url.removeprefix("sqlite:///"), timeout=30)
    try:
        db.execute("BEGIN IMMEDIATE")
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: task_states(pid) == {"T"}, 30, "the run's process to stop")
        db.rollback()
    finally:
        db.close()
    return pid


def task_states(pid: int) -> set[str]:
    """The scheduler state letter of each thread of process `pid` ("T": stopped)."""
    states = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        states.add(stat.read_text().rsplit(")", 1)[1].split()[0])
    return states


def signal_pending(pid: int, signum: int) -> bool:
    """Whether signal `signum` sent to process `pid` waits to be handled (the process being stopped)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return bool((int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)) & (1 << (signum - 1)))


def test_a_preempted_run_resumes_from_its_checkpoint_elsewhere_and_ends_as_if_never_stopped(server, tmp_path):
    from sqlalchemy import select

    from runtime.db import MetricPoint, Usage, session_factory
    from runtime.distributed import PREEMPT_SIGNAL

    with agents_online(server["api_url"], ("miner-a", "0.36"), ("miner-b", "0.72")) as (offers, _):
        path = rented_copy(tmp_path)
        # A seed of its own gives fresh cache keys (no earlier checkpoint).
        overrides = [f"classifier.epochs={EPOCHS}", "classifier.batch_size=4",
                     f"classifier.seed={time.time_ns() % 10**6}"]  # fmt: skip
        sets = sum((["--set", o] for o in overrides), [])
        checkpoint = checkpoint_file(path, overrides)
        run = spawn("run", str(path), "--json", *sets)
        # The machine goes back to mining: `aib provider preempt`. The run is held still from its second epoch until
        # the agent's signal has reached it, so the preemption lands in the middle of the training.
        pid = stopped_mid_training(run, offers["miner-a"]["id"], checkpoint)
        try:
            stopping = spawn("provider", "preempt", offers["miner-a"]["id"])
            wait_for(lambda: signal_pending(pid, PREEMPT_SIGNAL) or stopping.poll() is not None, 120,
                     "the provider agent's preemption signal")  # fmt: skip
        finally:
            os.kill(pid, signal.SIGCONT)
        stopped, _ = stopping.communicate(timeout=240)
        assert stopping.returncode == 0, stopped
        stopped_at = checkpoint_epoch(checkpoint)
        out, _ = run.communicate(timeout=400)
        assert run.returncode == 0, out
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "succeeded" and summary["provider_id"] == offers["miner-b"]["id"]
        assert summary["error"] is None
        with session_factory()() as s:
            resumed = s.scalar(
                select(MetricPoint.value).where(
                    MetricPoint.run_id == summary["run_id"], MetricPoint.name == "resumed_from_epoch"
                )
            )
            billed = {u.provider for u in s.query(Usage).filter(Usage.run_id == summary["run_id"])
                      if u.block_id == "compute.rented"}  # fmt: skip
        assert resumed == stopped_at and 2 <= stopped_at < EPOCHS  # where it stopped, not from the start
        assert billed == {offers["miner-a"]["id"], offers["miner-b"]["id"]}  # each for the time it worked

    assert_same_as_on_local_compute(summary, path, sets, tmp_path / "fresh-home")


def assert_same_as_on_local_compute(summary: dict, path: Path, sets: list[str], home: Path) -> None:
    """The same training never interrupted, on this machine's own compute with a fresh data folder (`home`), ends
    with the same metrics as the rented run `summary`."""
    local = yaml.safe_load(path.read_text())
    local["compute"] = "compute.local@1.0.0"
    (path.parent / "faq-local.yaml").write_text(yaml.safe_dump(local))
    ref = subprocess.run([*AIB, "run", str(path.parent / "faq-local.yaml"), "--json", *sets], capture_output=True,
                         text=True, timeout=400, env={**env(), "AIB_HOME": str(home)})  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    expected = json.loads(ref.stdout.strip().splitlines()[-1])["metrics"]
    for name in ("accuracy", "loss", "train_accuracy"):
        if name in expected:
            assert summary["metrics"][name] == pytest.approx(expected[name], abs=1e-6), name


def test_a_provider_that_vanishes_is_dropped_and_its_run_resumes_elsewhere_unpaid_for_the_lost_step(server, tmp_path):
    from sqlalchemy import select

    from runtime.db import MetricPoint, Usage, session_factory

    with agents_online(server["api_url"], ("flaky", "0.30"), ("steady", "0.90"),
                       envs={"flaky": QUICK_HEARTBEATS, "steady": QUICK_HEARTBEATS}) as (offers, agents):  # fmt: skip
        path = rented_copy(tmp_path)
        overrides = [f"classifier.epochs={EPOCHS}", "classifier.batch_size=4",
                     f"classifier.seed={time.time_ns() % 10**6}"]  # fmt: skip
        run = spawn("run", str(path), "--json", *sum((["--set", o] for o in overrides), []), extra_env=QUICK_HEARTBEATS)
        # The machine dies in the middle of the training: the agent, its worker and the run's process, all at once
        # (kill -9; the run is held still from its second epoch until then).
        flaky = offers["flaky"]["id"]
        run_pid = stopped_mid_training(run, flaky, checkpoint_file(path, overrides))
        worker = subprocess.run(["pgrep", "-f", f"worker start .*--name {flaky}"], capture_output=True, text=True)
        for pid in [run_pid, *map(int, worker.stdout.split())]:
            os.kill(pid, signal.SIGKILL)
        os.killpg(agents["flaky"].pid, signal.SIGKILL)
        out, _ = run.communicate(timeout=400)
        assert run.returncode == 0, out
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "succeeded" and summary["provider_id"] == offers["steady"]["id"]
        with session_factory()() as s:
            billed = {u.provider for u in s.query(Usage).filter(Usage.run_id == summary["run_id"])
                      if u.block_id == "compute.rented" and u.node_id == "classifier"}  # fmt: skip
            resumed = s.scalar(
                select(MetricPoint.value).where(
                    MetricPoint.run_id == summary["run_id"], MetricPoint.name == "resumed_from_epoch"
                )
            )
        # Steps the vanished provider finished are paid; the training step it never finished is not.
        assert billed == {offers["steady"]["id"]}
        assert resumed is not None and resumed >= 2  # from the checkpoint the vanished provider left
        listed = {r["id"]: r for r in json.loads(aib("providers", "list", "--json", extra_env=QUICK_HEARTBEATS).stdout)}
        assert listed[flaky]["online"] is False and listed[offers["steady"]["id"]]["online"] is True


def test_a_rented_voice_model_is_verified_with_its_uncached_features_computed_again_here(server, tmp_path):
    """speech.log-mel is never in the step cache (its features live in the shard store): the verifier computes
    them here from the cached clips instead of failing the provider for inputs it cannot find."""
    with agents_online(server["api_url"], ("voice", "0.30")) as (offers, _):
        src = shutil.copytree(TEMPLATES, tmp_path / "t", ignore=shutil.ignore_patterns("*.md"))
        pipeline = yaml.safe_load((src / "voice-commands.yaml").read_text())
        pipeline["compute"] = {"use": "compute.rented@1.0.0", "params": {"tier": "cpu"}}
        (src / "voice-rented.yaml").write_text(yaml.safe_dump(pipeline))
        small = ["speech.voices=4", "speech.speeds=[160]", "speech.pitches=[50]", "kws.epochs=2", "kws.channels=8",
                 f"kws.seed={time.time_ns() % 10**6}"]  # fmt: skip
        r = aib("run", str(src / "voice-rented.yaml"), "--json", *sum((["--set", o] for o in small), []), timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        assert summary["status"] == "succeeded" and summary["provider_id"] == offers["voice"]["id"]
        checked = summary["metrics"]["verification"]["kws"]
        assert checked["ok"] is True and checked["checked"] and checked["max_abs_diff"] == 0.0, checked


CHEATER = """
# A provider's machine running altered code: it trains, but never commits the checkpoints that prove it.
import runtime.training

runtime.training._commit = lambda ctx, segment, state: None
"""


def test_work_that_fails_verification_is_not_paid_and_the_run_is_redone_on_another_provider(server, tmp_path):
    from runtime.db import ProviderRow, Service, Usage, session_factory

    altered = tmp_path / "altered"
    altered.mkdir()
    (altered / "sitecustomize.py").write_text(CHEATER)  # loaded by every Python process of that agent
    pythonpath = os.pathsep.join(p for p in (str(altered), os.environ.get("PYTHONPATH", "")) if p)
    with agents_online(server["api_url"], ("cheater", "0.20"), ("honest", "0.80"),
                       envs={"cheater": {"PYTHONPATH": pythonpath}}) as (offers, _):  # fmt: skip
        cheater, honest = offers["cheater"]["id"], offers["honest"]["id"]
        path = rented_copy(tmp_path)
        sets = ["--set", "classifier.epochs=5", "--set", f"classifier.seed={time.time_ns() % 10**6}"]
        r = aib("run", str(path), *sets, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{cheater}'s work failed verification; running it again on another provider" in r.stdout
        assert "no evidence of its training" in r.stdout
        run = {"run_id": re.search(r"^run (run-[0-9a-f]+)", r.stdout, re.M).group(1)}
        summary = json.loads(aib("runs", "show", run["run_id"], "--json").stdout)
        assert summary["status"] == "succeeded" and summary["provider_id"] == honest
        assert summary["metrics"]["verification"]["classifier"]["ok"] is True  # the redone work holds up
        with session_factory()() as s:
            paid = {}
            for u in s.query(Usage).filter(Usage.run_id == run["run_id"], Usage.block_id == "compute.rented"):
                paid[u.provider] = paid.get(u.provider, 0) + u.amount_wei
            assert paid[cheater] == 0 and paid[honest] > 0  # the cheater's time is on record, unpaid
            assert s.get(ProviderRow, cheater).reputation < s.get(ProviderRow, honest).reputation
            [service] = s.query(Service).filter(Service.run_id == run["run_id"])  # one, built on the honest work
        assert summary["service_id"] == service.id


def forge_segment(folder, k: int) -> list[str]:
    """What a cheater hands in for segment `k` it never trained: altered weights, and a commitment to match (it
    controls both); the commitments as they are now."""
    import hashlib
    import io

    import torch

    state = torch.load(folder / f"epoch-{k}.pt", weights_only=True)
    state["module"] = {n: v + 1e-2 * torch.randn_like(v) if v.is_floating_point() else v
                       for n, v in state["module"].items()}  # fmt: skip
    buf = io.BytesIO()
    torch.save(state, buf)
    (folder / f"epoch-{k}.pt").write_bytes(buf.getvalue())
    commitments = json.loads((folder / "commitments.json").read_text())
    commitments[k] = hashlib.sha256(buf.getvalue()).hexdigest()
    (folder / "commitments.json").write_text(json.dumps(commitments))
    return commitments


def missing_evidence_fails_verification(path, run_id: str, provider_id: str) -> None:
    """Evidence the coordinator cannot find or read is a failed verification, never a pass: for each way it can go
    missing, the run fails, the provider's compute for it is withheld and its reputation falls. (Each is undone
    afterwards, so the next check starts from the honest run.)"""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.config import get_settings
    from runtime.db import ProviderRow, Run, Usage, session_factory
    from runtime.distributed import verify_run

    pipeline = load_pipeline(path, ["classifier.epochs=5"])
    plan = compile_plan(pipeline)
    cache = get_settings().cache_dir
    segments = cache / "work" / plan.step("classifier").cache_key / "segments"
    encoder_key = plan.step("encoder").cache_key
    inputs = cache / "steps" / encoder_key[:2] / f"{encoder_key}.pkl"
    with session_factory()() as s:
        paid = {
            u.id: u.amount_wei for u in s.query(Usage).filter(Usage.run_id == run_id, Usage.provider == provider_id)
        }
        reputation = s.get(ProviderRow, provider_id).reputation
    assert paid and all(paid.values())

    def undo(moved: Path, kept: Path) -> None:
        kept.replace(moved)
        with session_factory().begin() as s:
            s.get(Run, run_id).status, s.get(Run, run_id).error = "succeeded", None
            for u in s.query(Usage).filter(Usage.id.in_(paid)):
                u.amount_wei = paid[u.id]
            s.get(ProviderRow, provider_id).reputation = reputation

    ways = {
        "no commitments": (segments / "commitments.json", "no evidence of its training"),
        "an unreadable checkpoint": (segments / "epoch-1.pt", "the checkpoint after epoch 1 does not match its"),
        "its inputs gone": (inputs, "its inputs are not in the coordinator's cache"),
    }
    for way, (evidence, reason) in ways.items():
        kept = evidence.with_name(evidence.name + ".kept")
        evidence.replace(kept)
        if way == "an unreadable checkpoint":
            evidence.write_bytes(kept.read_bytes()[:100])  # truncated, as a dying disk or a sloppy cheat leaves it
        try:
            found = verify_run(run_id, pipeline, plan, rate=1.0)["classifier"]
            assert found["ok"] is False and found["reason"].startswith(reason), (way, found)
            with session_factory()() as s:
                run = s.get(Run, run_id)
                assert run.status == "failed" and run.error.startswith("verification failed: step 'classifier'"), way
                assert all(u.amount_wei == 0 for u in s.query(Usage).filter(Usage.id.in_(paid))), way
                assert s.get(ProviderRow, provider_id).reputation < reputation, way
        finally:
            undo(evidence, kept)
    # A training step already done on this machine before the run was placed is not the provider's work.
    moved = segments / "commitments.json"
    moved.replace(moved.with_name("commitments.json.kept"))
    try:
        assert "classifier" not in verify_run(run_id, pipeline, plan, rate=1.0, precached=frozenset({"classifier"}))
        with session_factory()() as s:
            assert s.get(Run, run_id).status == "succeeded"
    finally:
        undo(moved, moved.with_name("commitments.json.kept"))


def cheat_and_get_caught(path, run_id: str, provider_id: str) -> None:
    """A provider that reports work it did not do: the weights committed after epoch 3 are altered, and their
    commitment with them (a cheater controls both). Replaying epoch 3 here catches it: the run fails, the
    provider's compute for it is withheld and its reputation halves."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.config import get_settings
    from runtime.db import ProviderRow, Run, Usage, session_factory
    from runtime.distributed import verify_run

    pipeline = load_pipeline(path, ["classifier.epochs=5"])
    plan = compile_plan(pipeline)
    forge_segment(get_settings().cache_dir / "work" / plan.step("classifier").cache_key / "segments", 3)

    findings = verify_run(run_id, pipeline, plan, rate=1.0)
    assert findings["classifier"]["ok"] is False
    assert findings["classifier"]["reason"].startswith("epoch 3 replayed to weights")
    with session_factory()() as s:
        run = s.get(Run, run_id)
        assert run.status == "failed" and run.error.startswith("verification failed: step 'classifier': epoch 3")
        assert all(u.amount_wei == 0 for u in s.query(Usage).filter(Usage.run_id == run_id,
                                                                     Usage.provider == provider_id))  # fmt: skip
        assert s.get(ProviderRow, provider_id).reputation == 0.5
