"""The `aib` command line: validate, run, serve, ui; the other command groups live beside this module."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from builder.cli.base import JsonFlag, _print_json, _print_run, _session, app, err, out
from builder.cli.base import _fail as _fail_usage
from builder.cli.payments import _pay_deposit, _payment_check, _settle_after_run
from builder.errors import AibError, ValidationError
from builder.money import format_aic


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a param: node.param=value")] = None,
) -> None:
    """Check a pipeline file; prints `valid` or every problem with its YAML path and line."""
    from builder.pipeline import load_pipeline
    from runtime.datasets import compile_with_datasets

    try:
        compile_with_datasets(load_pipeline(file, set_ or []))
    except ValidationError as exc:
        for problem in exc.problems:
            err.print(str(problem), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    out.print("valid")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a param: node.param=value (repeatable)")
    ] = None,
    json_: JsonFlag = False,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Use this run id (the UI passes one; with --tune: the first trial's)")
    ] = None,
    tune_trials: Annotated[
        int | None,
        typer.Option(
            "--tune",
            min=1,
            max=200,
            help="Tune the model block: N trials of its own params (each a real run, billed), the pipeline as "
            "written first; prints the trials and the best params",
        ),
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="With --tune: spend at most this (e.g. '0.5' AIC): trials past it are left out")
    ] = None,
) -> None:
    """Train a pipeline: validate, compile, run every step as a Prefect flow, export the service."""
    if tune_trials is not None:
        from builder.cli.tune import tune_or_exit

        tune_or_exit(file, set_ or [], tune_trials, budget, json_, run_id)  # --run-id: the first trial's
    if budget is not None:
        _fail_usage("--budget goes with --tune")
    from builder.cli.progress import RichReporter
    from builder.pipeline import load_pipeline
    from runtime.datasets import compile_with_datasets
    from runtime.runner import execute_run
    from runtime.runs import create_run, get_run, reap_stale_runs, run_summary

    pipeline = load_pipeline(file, set_ or [])
    plan = compile_with_datasets(pipeline)
    rented = pipeline.compute.block.id == "compute.rented"
    if rented:
        from runtime.distributed import api_url

        api_url()  # a rented tier needs the distributed server: refused before anything is recorded or paid
    chain, deposit_wei = _payment_check(plan)
    with _session() as s:
        reap_stale_runs(s)
        record = create_run(s, pipeline, plan, run_id)
    run_id = record.id
    if not json_:
        out.print(f"run [bold]{run_id}[/] · {plan.name} · quote {format_aic(plan.quote_wei)}")
    if chain is not None:
        _pay_deposit(chain, run_id, deposit_wei, quiet=json_)

    def _on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    status = 0
    try:
        if rented:
            status = _run_on_provider(run_id, pipeline, plan, quiet=json_)
        elif json_:
            execute_run(run_id, pipeline, plan)
        else:
            steps = [(s.node_id, s.ref) for s in plan.steps]
            with RichReporter(out, steps) as reporter:
                execute_run(run_id, pipeline, plan, reporter)
    except KeyboardInterrupt:
        status = 130
    except AibError:
        status = 1
    if chain is not None:
        _settle_after_run(chain, run_id, quiet=json_)
    with _session() as s:
        summary = run_summary(s, get_run(s, run_id))
    if json_:
        _print_json(summary)
    else:
        _print_run(summary)
    raise typer.Exit(status)


def _verify_provider_work(run_id: str, pipeline: Any, plan: Any, quiet: bool, precached: frozenset[str]) -> int:
    """Replay a secret sample of the provider's committed training segments here; 0 when it holds up."""
    from runtime.distributed import verify_run

    findings = verify_run(run_id, pipeline, plan, precached=precached)
    for node, f in findings.items():
        if not quiet:
            if f.get("ok") is None:
                out.print(f"  {node}: not verified ({f.get('reason')})", highlight=False)
            elif "checked" not in f:  # failed before any replay: the evidence is missing or unreadable
                out.print(f"  {node}: FAILED: {f.get('reason')}", highlight=False)
            else:
                verdict = "holds up" if f["ok"] else f"FAILED: {f.get('reason')}"
                total = f.get("segments", f["epochs"])
                unit = "epoch(s)" if total == f["epochs"] else "segment(s)"
                out.print(f"  {node}: replayed {unit} {f['checked']} of {total}: {verdict}", highlight=False)
    return 1 if any(f.get("ok") is False for f in findings.values()) else 0


MAX_ATTEMPTS = 5  # a run preempted this many times in a row fails rather than chase providers forever


def _run_on_provider(run_id: str, pipeline: Any, plan: Any, quiet: bool) -> int:
    """Place the run with the Resource Allocator, hand it to the provider's worker and follow it; a run its
    provider preempts resumes from its last checkpoint on another provider. The exit status."""
    from builder.errors import RunError
    from runtime.db import Run, utcnow
    from runtime.distributed import discard_unverified, place_run, submit_run, wait_for_run

    def on_change(node: str, status: str) -> None:
        if not quiet:
            out.print(f"  {node}: {status}", highlight=False)

    # Steps whose outputs this machine already holds are not the provider's work: they owe no evidence.
    from runtime.config import get_settings
    from runtime.store import StepCache

    cache = StepCache(get_settings().cache_dir / "steps")
    precached = frozenset(step.node_id for step in plan.steps if cache.has(step.cache_key))
    excluded: set[str] = set()  # providers that preempted the run or whose work failed verification
    failures: list[str] = []
    for _ in range(MAX_ATTEMPTS):
        try:
            assignment = place_run(run_id, pipeline, plan, frozenset(excluded))
        except RunError as exc:
            if failures:  # say why the run was being placed again
                with _session() as s:
                    s.get(Run, run_id).error = f"{'; '.join(failures)}, and then {exc}"
                    s.commit()
            raise
        if not quiet:
            out.print(f"placed on {assignment.reason}", highlight=False)
        if _speaks_protocol(assignment.provider_id):
            return _run_with_leases(run_id, pipeline, plan, quiet, precached, assignment.provider_id, excluded)
        status = wait_for_run(run_id, submit_run(run_id, assignment.provider_id), on_change)
        excluded.add(assignment.provider_id)
        if status == "succeeded":
            if _verify_provider_work(run_id, pipeline, plan, quiet, precached) == 0:
                return 0
            # Not paid, reputation lowered (verify_run); the work is thrown away and done again by another.
            discard_unverified(plan, precached)
            failures.append(f"{assignment.provider_id}'s work failed verification")
            if not quiet:
                out.print(f"{assignment.provider_id}'s work failed verification; running it again on another provider")
            continue
        if status != "preempted":
            return 1
        failures.append(f"preempted by {assignment.provider_id}")
        if not quiet:
            out.print(f"preempted by {assignment.provider_id}; resuming from the last checkpoint elsewhere")
    with _session() as s:
        run = s.get(Run, run_id)
        run.status, run.finished_at = "failed", utcnow()
        run.error = f"no provider finished it in {MAX_ATTEMPTS} attempts: {'; '.join(failures)}"
        s.commit()
    return 1


def _speaks_protocol(provider_id: str) -> bool:
    """Whether an offer is a provider on another machine (provider protocol) rather than an agent of our own."""
    from runtime.db import ProviderRow

    with _session() as s:
        row = s.get(ProviderRow, provider_id)
        return row is not None and row.via == "api"


def _run_with_leases(
    run_id: str, pipeline: Any, plan: Any, quiet: bool, precached: frozenset[str], first: str | None, excluded: set[str]
) -> int:
    """Run here with every training step leased to protocol providers (runtime/protocol/remote.py); work that
    fails verification is not paid and is done again by another provider."""
    from builder.cli.progress import RichReporter
    from runtime.distributed import discard_unverified
    from runtime.protocol.remote import RemoteTraining
    from runtime.runner import execute_run

    params = pipeline.compute.params
    max_price = round(params.max_price_per_hour * 10**18 / 3600) if params.max_price_per_hour else None
    for _ in range(MAX_ATTEMPTS):
        remote = RemoteTraining(run_id, plan, exclude=set(excluded), first=first, tier=params.tier,
                                memory_gb=params.memory_gb, max_price_wei_per_s=max_price)  # fmt: skip
        try:
            if quiet:
                execute_run(run_id, pipeline, plan, remote=remote)
            else:
                with RichReporter(out, [(s.node_id, s.ref) for s in plan.steps]) as reporter:
                    execute_run(run_id, pipeline, plan, reporter, remote=remote)
        except AibError:
            return 1
        if _verify_provider_work(run_id, pipeline, plan, quiet, precached) == 0:
            return 0
        with _session() as s:
            from runtime.db import Run

            cheat = s.get(Run, run_id).provider_id
        discard_unverified(plan, precached)
        excluded.add(cheat)
        first = None
        if not quiet:
            out.print(f"{cheat}'s work failed verification; running it again on another provider")
    return 1


@app.command()
def serve(
    service_id: Annotated[
        str,
        typer.Argument(
            help="Service id (from `aib run` or `aib services list`), or a service's name for its stable endpoint: "
            "the live version, switched by `aib services promote|rollback` without downtime"
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads (0: all cores)")] = 0,
    on_providers: Annotated[
        bool,
        typer.Option(
            "--on-providers",
            help="Answer calls on providers' machines (`aib provider serve`) through this "
            "gateway, which checks API keys and meters every call; it answers itself when no host can",
        ),
    ] = False,
    replicas: Annotated[int, typer.Option(help="With --on-providers: hosts to place the service on", min=1)] = 1,
    audit_rate: Annotated[
        float,
        typer.Option(
            help="With --on-providers: share of calls the gateway re-runs to check a host's answers "
            "(a host caught answering wrong is taken off and not paid)",
            min=0.0,
            max=1.0,
        ),
    ] = 0.05,
    metrics_key: Annotated[
        str | None,
        typer.Option(
            envvar="AIB_METRICS_KEY",
            show_envvar=True,
            help="A secret that a scrape of /metrics (Prometheus format) must send as `Authorization: Bearer KEY`; "
            "without it /metrics is open like /health. Prefer the environment variable: a command line is visible "
            "to every user of the machine",
        ),
    ] = None,
) -> None:
    """Serve a trained service over HTTP (OpenAPI docs at /docs, Prometheus metrics at /metrics)."""
    from builder.errors import ServeError
    from runtime.db import Service
    from runtime.runs import get_service
    from runtime.serving import ensure_port_free
    from runtime.serving import serve as serve_http
    from runtime.versions import versions_of

    with _session() as s:
        if s.get(Service, service_id) is None and not versions_of(s, service_id):
            get_service(s, service_id)  # one sentence: no such service
    ensure_port_free(host, port)
    if metrics_key is not None and len(metrics_key) < 16:
        raise ServeError("the metrics key is shorter than 16 characters; choose a longer secret")
    where = f"; answered on providers' machines ({replicas} host(s), {audit_rate:.0%} of calls checked)" \
        if on_providers else ""  # fmt: skip
    where += "; /metrics needs the metrics key" if metrics_key else "; /metrics is open (no --metrics-key)"
    err.print(
        f"serving {service_id} on http://{host}:{port}  (docs: http://{host}:{port}/docs){where} — Ctrl-C stops",
        highlight=False,
    )
    hosted = {"replicas": replicas, "audit_rate": audit_rate} if on_providers else None
    serve_http(service_id, host=host, port=port, threads=threads or None, on_providers=hosted, metrics_key=metrics_key)


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8501,
) -> None:
    """Start the browser workbench (build, run, serve, pay) and print its URL; Ctrl-C stops it and what it started."""
    from builder.cli.launch import run_ui
    from builder.errors import ServeError

    def announce(url: str) -> None:
        out.print(f"[bold green]Easy AI Builder workbench:[/] {url}   (Ctrl-C stops it)")

    code = run_ui(host, port, announce)
    if code:
        raise ServeError(f"the workbench stopped by itself (exit code {code}); what it had started is stopped too")
    err.print("stopped the workbench and everything it had started", highlight=False)


# Registered after validate/run/serve/ui so that `aib --help` lists those first.
from builder.cli import catalog, compute, datasets, quickstart, rewards  # noqa: E402, F401
from builder.cli import chain as chain_commands  # noqa: E402, F401


def main() -> None:
    """Entry point of the `aib` console script: every AibError becomes `error: …` and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.umask(0o077)  # what aib and the servers it starts write (ledger, logs, keys, data) is its user's alone
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        for problem in exc.problems:
            err.print(f"error: {problem}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(2)
    except AibError as exc:
        _fail_plain(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and friends
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise


def _fail_plain(message: str) -> None:
    err.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
    sys.exit(2)
