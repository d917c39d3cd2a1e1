"""What the browser's buttons do, without Streamlit: open a template, store an upload, start or cancel a run.

Each draft lives in its own workspace folder under AIB_HOME/ui/workspaces, holding `pipeline.yaml` and
the data files it names, so uploads never touch the templates. Runs are started as detached `aib run`
processes (the page only reads their progress from the database), so training never blocks the UI.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from builder.datasets import (
    DATA_SUFFIXES,
    DatasetError,
    UploadPreview,
    check_data_file,
    check_upload,
    upload_types,
)
from builder.errors import AibError
from builder.pipeline import param_problems
from builder.ui.draft import Draft, DraftError, block_of, from_yaml, to_yaml, validate

START_DEDUP_S = 10.0


def child_env() -> dict[str, str]:
    """The environment of processes the UI starts: the same data folder and database, whatever their cwd."""
    from runtime.config import get_settings

    settings = get_settings()
    return {**os.environ, "AIB_HOME": str(settings.home.resolve()), "AIB_DATABASE_URL": settings.database_url}


def workspaces_dir() -> Path:
    """Where the UI keeps drafts and their data files."""
    from runtime.config import get_settings

    return get_settings().home / "ui" / "workspaces"


def new_workspace(name: str) -> Path:
    """A fresh, empty workspace folder for a pipeline called `name`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "pipeline"
    path = workspaces_dir() / f"{slug}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


def open_template(path: Path) -> Draft:
    """A new draft from a template: its YAML and the data files it names, copied into a new workspace."""
    text = path.read_text(encoding="utf-8")
    draft = from_yaml(text, path.parent)
    workspace = new_workspace(str(draft.data.get("name") or path.stem))
    for node in draft.blocks.values():
        for value in (node.get("params") or {}).values():
            if isinstance(value, str) and Path(value).suffix.lower() in DATA_SUFFIXES and not Path(value).is_absolute():
                src = path.parent / value
                if src.is_file():
                    (workspace / value).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, workspace / value)
    draft.base_dir = workspace
    save(draft)
    return draft


def open_yaml(text: str) -> Draft:
    """A new draft from uploaded pipeline YAML (its relative data paths must then be uploaded too)."""
    draft = from_yaml(text, Path("."))
    draft.base_dir = new_workspace(str(draft.data.get("name") or "pipeline"))
    save(draft)
    return draft


def save(draft: Draft) -> Path:
    """Write the draft to its workspace's pipeline.yaml (atomically); returns the path."""
    from builder.files import atomic_write_bytes

    path = draft.base_dir / "pipeline.yaml"
    atomic_write_bytes(path, to_yaml(draft).encode("utf-8"))
    return path


@contextlib.contextmanager
def _staged_upload(draft: Draft, node_id: str, param: str, filename: str, data: bytes):
    """The upload written to a temporary copy of the workspace and checked by the node's own block there:
    yields (block, stored name, params pointing at it, temporary folder); DraftError (one sentence) when refused."""
    block = block_of(draft, node_id)
    if block is None:
        raise DraftError(f"{node_id} has no known block")
    try:
        safe = check_upload(filename, data, upload_types(block))
    except DatasetError as exc:
        raise DraftError(str(exc)) from None
    params = {**(draft.blocks[node_id].get("params") or {}), param: f"data/{safe}"}
    with tempfile.TemporaryDirectory(dir=draft.base_dir) as tmp:
        (Path(tmp) / "data").mkdir()
        (Path(tmp) / "data" / safe).write_bytes(data)
        problems = check_data_file(block, params, Path(tmp), only=param)
        if problems:
            raise DraftError(_about(filename, problems[0]))
        yield block, safe, params, Path(tmp)


def _about(filename: str, problem: str) -> str:
    """`filename: problem`, without naming the file twice when the problem already starts with its name."""
    return problem if problem.startswith(filename) else f"{filename}: {problem}"


def store_upload(draft: Draft, node_id: str, param: str, filename: str, data: bytes) -> tuple[str, str]:
    """Check an uploaded data file with the node's own block, then store it and point `param` at it.

    Returns the stored relative path and a note for the user ("" when there is nothing to say).

    DraftError (one sentence) when it is the wrong kind, empty, too large or fails the block's checks;
    then nothing is stored and the draft is unchanged.
    """
    with _staged_upload(draft, node_id, param, filename, data) as (block, safe, params, tmp):
        rel = f"data/{safe}"
        # Its own parameter passed the check (else _staged_upload refused it): what remains concerns the others.
        others = check_data_file(block, params, tmp)
        target = draft.base_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, target)
    note = ""
    if others and params.get("heldout_path"):
        # A template's held-out paraphrases belong to its own intents; a new FAQ gets a random split instead.
        params.pop("heldout_path")
        note = (
            "the held-out file did not match the new data, so accuracy is measured on questions of your file that "
            "training does not see: a held-out part, or cross-validation when the file is small"
        )
    draft.blocks[node_id]["params"] = params
    save(draft)
    return rel, note


def preview_upload(draft: Draft, node_id: str, param: str, filename: str, data: bytes, rows: int = 5) -> UploadPreview:
    """Check an upload exactly as store_upload does, but store nothing: its detected format, columns and first rows.

    DraftError (one sentence) when store_upload would refuse it; the draft and its workspace are unchanged.
    """
    with _staged_upload(draft, node_id, param, filename, data) as (block, safe, params, tmp):
        path = tmp / "data" / safe
        try:
            if path.suffix.lower() in (".csv", ".txt", ".xlsx", ".xlsm"):
                from blocks.chat.faq_csv import read_table_described

                frame, description = read_table_described(path)
                head = frame.head(rows).to_dict("records")
                return UploadPreview(safe, description, list(frame.columns), head, len(frame))
            sample = block().preview(block.Params(**params), tmp, rows, 0) if hasattr(block, "preview") else []
        except AibError as exc:
            raise DraftError(_about(filename, str(exc))) from None
        columns = list(sample[0]) if sample else []
        return UploadPreview(safe, f"{path.suffix.lstrip('.')} archive", columns, sample, None)


def use_dataset(draft: Draft, node_id: str, dataset_id: str) -> str:
    """Point the node's data parameter at a published dataset (paid per run to its owner); a note for the user."""
    from runtime.datasets import load

    block = block_of(draft, node_id)
    try:
        ds = load(dataset_id)
    except DatasetError as exc:
        raise DraftError(str(exc)) from None
    if block is None or block.id != ds.block.split("@")[0]:
        raise DraftError(f"{ds.name} is published for {ds.block}, not for {node_id}")
    params = dict(draft.blocks[node_id].get("params") or {})
    params[ds.param] = str(ds.path)
    note = ""
    if params.pop("heldout_path", None):
        note = (
            "; the template's held-out file belongs to its own data, so part of the dataset is held out instead "
            "(or, when it is small, accuracy is measured by cross-validation)"
        )
    draft.blocks[node_id]["params"] = params
    save(draft)
    return f"{node_id} now reads the published dataset {ds.name} ({ds.id}), paid per run to {ds.owner}" + note


def preview(draft: Draft, node_id: str, rows: int = 5, seed: int | None = None) -> list[dict[str, Any]]:
    """A random sample of a data node's rows; DraftError when it cannot be read."""
    block = block_of(draft, node_id)
    if block is None or not hasattr(block, "preview"):
        raise DraftError(f"{node_id} is not a data block that can be previewed")
    try:
        params = block.Params(**(draft.blocks[node_id].get("params") or {}))
        return block().preview(params, draft.base_dir, rows=rows, seed=seed)
    except AibError as exc:
        raise DraftError(str(exc)) from None
    except PydanticValidationError as exc:  # a block just dropped on the canvas has no file yet: say which setting
        raise DraftError(f"{node_id} cannot be previewed yet: {'; '.join(param_problems(exc))}") from None
    except Exception as exc:  # file errors: the panel shows them beside the data block
        raise DraftError(f"{node_id} cannot be previewed yet ({type(exc).__name__}: {exc})") from None


def quote(draft: Draft) -> int | None:
    """The pipeline's quoted price in wei, or None while it does not validate."""
    from builder.pipeline import parse_pipeline
    from runtime.datasets import compile_with_datasets

    problems, _ = validate(draft)
    if problems:
        return None
    return compile_with_datasets(parse_pipeline(to_yaml(draft), draft.base_dir)).quote_wei


def start_run(draft: Draft, tune_trials: int = 0) -> str:
    """Validate, save and start `aib run` for the draft as a detached process (with `tune_trials`: a tune of that
    many trials, `aib run --tune`); returns the run id (of the first trial)."""
    import hashlib
    import json
    import time

    from runtime.runs import new_run_id

    problems, _ = validate(draft)
    if problems:
        raise DraftError(f"the pipeline has {len(problems)} problem(s); the first: {problems[0]}")
    path = save(draft)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    marker = draft.base_dir / "last-start.json"
    if marker.exists():
        # The page can be rerun by the browser right after a click, before it records the run it started;
        # the same unchanged pipeline started again within seconds is that same click, not a new run.
        last = json.loads(marker.read_text())
        same = last.get("sha256") == digest and last.get("tune", 0) == tune_trials
        if same and time.time() - last.get("at", 0) < START_DEDUP_S:
            return last["run_id"]
    run_id = new_run_id()
    log = open(draft.base_dir / f"{run_id}.log", "wb")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "run", str(path), "--run-id", run_id, "--json"]
        + (["--tune", str(tune_trials)] if tune_trials else []),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives a page reload; cancelled as a process group
        cwd=draft.base_dir,
        env=child_env(),
    )
    log.close()
    (draft.base_dir / f"{run_id}.pid").write_text(str(proc.pid))
    marker.write_text(json.dumps({"sha256": digest, "run_id": run_id, "at": time.time(), "tune": tune_trials}))
    return run_id


def run_starting(run_id: str) -> bool | None:
    """For a run started from the UI that is not in the database yet: True while its process lives,
    False when it exited without creating the run (its log says why), None when the UI did not start it."""
    from runtime.processes import pid_alive

    for path in workspaces_dir().glob(f"*/{run_id}.pid"):
        return pid_alive(int(path.read_text() or 0))
    return None


def run_log(run_id: str) -> str | None:
    """The output of a run started from the UI, if this machine has it."""
    for path in workspaces_dir().glob(f"*/{run_id}.log"):
        return path.read_text(encoding="utf-8", errors="replace")
    return None


def cancel_run(run_id: str, grace: float = 10.0) -> bool:
    """Stop a running run and record it as cancelled; False if it was not running.

    Its process group gets SIGTERM (SIGKILL after `grace` seconds): the step running is interrupted, its
    checkpoint kept, so running the pipeline again resumes it.
    """
    import time

    from sqlalchemy import select

    from runtime.db import Step, session_factory, utcnow
    from runtime.processes import pid_alive, process_started, stop_process_group, stop_processes
    from runtime.runs import get_run, reap_stale_runs

    with session_factory()() as s:
        run = get_run(s, run_id)
        pid, status = run.pid, run.status
    if status not in ("queued", "running") or not pid_alive(pid):
        return False
    if os.getpgid(pid) == pid:  # started by the workbench: its own process group (with any children)
        stop_process_group(pid, grace)
    else:  # started from a terminal: never signal the terminal's whole group
        stop_processes({pid: process_started(pid)}, grace)
    deadline = time.monotonic() + 5  # a SIGKILLed process still takes a moment to go
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with session_factory()() as s:
        reap_stale_runs(s)  # a killed process could not record its end: bill its steps up to their last report
        run = get_run(s, run_id)
        if run.status == "succeeded":  # it finished before the signal arrived
            return False
        run.status, run.error = "cancelled", "cancelled from the workbench"
        run.finished_at = run.finished_at or utcnow()
        for step in s.scalars(select(Step).where(Step.run_id == run_id, Step.status.in_(("running", "failed")))):
            step.status, step.error = "cancelled", None
        s.commit()
    return True


def server_of(service_id: str) -> dict[str, Any] | None:
    """The API server the UI started for a service ({pid, port, url, …}) while it is alive, else None."""
    import json

    from runtime.config import ui_servers_dir
    from runtime.processes import pid_alive, same_process

    path = ui_servers_dir() / f"{service_id}.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    # A record without a start time (older workbenches) can only be checked by its pid.
    if not (same_process(info.get("pid"), info["started"]) if "started" in info else pid_alive(info.get("pid"))):
        path.unlink(missing_ok=True)
        return None
    return info


def start_server(service_id: str, port: int | None = None) -> dict[str, Any]:
    """Start `aib serve SERVICE_ID` on a free loopback port as a detached process; returns {pid, port, url}."""
    import json

    from builder.files import atomic_write_bytes
    from runtime.config import ui_servers_dir
    from runtime.processes import free_port, process_started, wait_for_http

    running = server_of(service_id)
    if running:
        return running
    port = port or free_port()
    ui_servers_dir().mkdir(parents=True, exist_ok=True)
    log_path = ui_servers_dir() / f"{service_id}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child process
    # Its /metrics answers only the workbench (which shows them on the Services page): the key goes to the server in
    # its environment, not on a command line other users can read, and stays in the workbench's own record.
    metrics_key = secrets.token_urlsafe(24)
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "serve", service_id, "--port", str(port)],
        env={**child_env(), "AIB_METRICS_KEY": metrics_key},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    if not wait_for_http(proc, f"{url}/health"):
        if proc.poll() is not None:
            raise DraftError(f"the API server of {service_id} stopped at start; its log is {log_path}")
        # Never leave a server nobody can reach running (and holding the port) behind.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        raise DraftError(
            f"the API server of {service_id} did not answer within 60 s and was stopped; its log is {log_path}"
        )
    # The server's start time tells it from a later process with its pid; the workbench's (this process) lets
    # `aib ui` stop the servers its workbench started when it stops (builder/cli/launch.py).
    info = {
        "pid": proc.pid,
        "port": port,
        "url": url,
        "started": process_started(proc.pid),
        "workbench": {"pid": os.getpid(), "started": process_started(os.getpid())},
        "metrics_key": metrics_key,
    }
    launcher = int(os.environ.get("AIB_UI_PARENT") or 0)
    if launcher and launcher == os.getppid():
        # `aib ui`, which stops these servers when it stops. Killed, it cannot, and this workbench ends with it (its
        # parent-death signal) but may take seconds to: the next `aib ui` stops a server whose launcher is gone at once.
        info["launcher"] = {"pid": launcher, "started": process_started(launcher)}
    # Created 0600 (mkstemp) and replaced whole: it holds the metrics key, this user's alone whatever the umask.
    atomic_write_bytes(ui_servers_dir() / f"{service_id}.json", json.dumps(info).encode())
    return info


def server_metrics(service_id: str) -> dict[str, Any] | None:
    """What the API server the UI started for a service says of itself (runtime.service_metrics.summarise: latency
    percentiles, error rates, records written); None when none runs or it does not answer."""
    import httpx

    from runtime.service_metrics import summarise

    info = server_of(service_id)
    if info is None:
        return None
    headers = {"Authorization": f"Bearer {info['metrics_key']}"} if info.get("metrics_key") else {}
    try:
        r = httpx.get(f"{info['url']}/metrics", headers=headers, timeout=2)
    except httpx.HTTPError:
        return None
    return summarise(r.text) if r.status_code == 200 else None


def stop_server(service_id: str) -> bool:
    """Stop the API server the UI started for a service; False when none runs."""
    from runtime.config import ui_servers_dir

    info = server_of(service_id)
    if info is None:
        return False
    try:
        os.killpg(os.getpgid(info["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        pass
    (ui_servers_dir() / f"{service_id}.json").unlink(missing_ok=True)
    return True


def try_service(predictor: Any, service_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """Answer one input in-process, billed as one call like an API call; DraftError for unacceptable input."""
    import uuid as uuid_

    from pydantic import ValidationError as PydanticValidationError

    from builder.errors import BadItem
    from runtime.db import Service, session_factory
    from runtime.ledger import add_usage, per_call_amount

    if "file" in values:  # an uploaded file, for services that take one (images)
        item = {"file": values["file"]}
    else:
        try:
            item = predictor.Request(**values).model_dump()
        except PydanticValidationError as exc:
            raise DraftError("; ".join(param_problems(exc))) from None
    too_large = predictor.check_item(item)
    if too_large:
        raise DraftError(too_large)
    try:
        if hasattr(predictor, "prepare"):
            item = predictor.prepare(item)
    except BadItem as exc:
        raise DraftError(str(exc)) from None
    result = predictor.predict([item])[0]
    with session_factory()() as s:
        svc = s.get(Service, service_id)
        add_usage(
            s,
            bill_key=f"call:ui:{uuid_.uuid4().hex}",
            service_id=service_id,
            block_id=svc.block_id,
            version=svc.version,
            provider=svc.provider,
            quantity=1,
            unit="call",
            amount_wei=per_call_amount(svc.call_price_wei),
        )
        s.commit()
    return result


__all__ = [
    "run_starting",
    "cancel_run",
    "server_of",
    "start_server",
    "stop_server",
    "try_service",
    "new_workspace",
    "open_template",
    "open_yaml",
    "preview",
    "preview_upload",
    "quote",
    "run_log",
    "save",
    "start_run",
    "store_upload",
    "workspaces_dir",
]
