"""`aib quickstart`, the main job of `make run`: workbench, a trained template, its API and a curl line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from builder.cli.base import _aib, _fail, _print_run, _session, app, out
from builder.cli.payments import _pay_deposit, _payment_check, _settle_after_run, _start_local_chain_for_payments


@app.command()
def quickstart(
    template: Annotated[str, typer.Option(help="Template to train")] = "faq-chatbot",
    host: Annotated[str, typer.Option(help="Address to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on")] = 8000,
    ui_port: Annotated[int, typer.Option(help="Port of the browser workbench (0: do not start it)")] = 8501,
) -> None:
    """The main job of `make run`: start the workbench, train a template, serve it, print a curl line."""
    from runtime.config import get_settings, templates_dir
    from runtime.serving import ensure_port_free

    path = templates_dir() / f"{template}.yaml"
    if not path.exists():
        _fail(f"no template {template!r} in {templates_dir()}; `aib templates list` shows them")
    ensure_port_free(host, port)
    if ui_port:
        ensure_port_free(host, ui_port)
    out.print(f"Easy AI Builder · data in {get_settings().home}")
    from builder.cli.launch import signals_interrupt, start_ui, stop_ui

    ui_proc, ui_url = None, None
    # Ctrl-C or SIGTERM stops everything `make run` started (the API server handles them itself while it serves);
    # balances stay in the chain's state file.
    with signals_interrupt() as stopping:
        started_chain = _start_local_chain_for_payments()
        try:
            if ui_port:
                ui_proc, ui_url = start_ui(host, ui_port)
                out.print(f"[bold green]Workbench (open it in your browser):[/] {ui_url}")
            _quickstart(template, path, host, port, ui_url)
        except KeyboardInterrupt:
            out.print("stopping…")
        finally:
            stopping.append(0)
            if ui_proc is not None:
                stop_ui(ui_proc)
            if started_chain:
                from runtime.chain_node import stop_local

                stop_local()


def _quickstart(template: str, path: Path, host: str, port: int, ui_url: str | None = None) -> None:
    """Train `template` (paid when a chain is available), create a demo key, print a curl line, serve."""
    from builder.cli.progress import RichReporter
    from builder.pipeline import load_pipeline
    from runtime.datasets import compile_with_datasets
    from runtime.keys import create_key
    from runtime.runner import execute_run
    from runtime.runs import create_run, reap_stale_runs
    from runtime.serving import serve as serve_http

    out.print(f"training template [bold]{template}[/] (first run also starts Prefect and loads the sentence encoder)…")
    pipeline = load_pipeline(path)
    plan = compile_with_datasets(pipeline)
    chain, deposit_wei = _payment_check(plan)
    with _session() as s:
        reap_stale_runs(s)
        record = create_run(s, pipeline, plan)
    if chain is not None:
        _pay_deposit(chain, record.id, deposit_wei, quiet=False)
    with RichReporter(out, [(st.node_id, st.ref) for st in plan.steps]) as reporter:
        execute_run(record.id, pipeline, plan, reporter)
    if chain is not None:
        _settle_after_run(chain, record.id, quiet=False)
    from runtime.runs import get_run, run_summary

    with _session() as s:
        summary = run_summary(s, get_run(s, record.id))
        key, _ = create_key(s, summary["service_id"])
    _print_run(summary)
    base = f"http://{host}:{port}"
    out.print()
    out.print(f"[bold green]Your chatbot API is up:[/] {base}   docs: {base}/docs")
    out.print("Try it (demo API key created for you):")
    body = json.dumps({"text": "How do I reset my password?"})
    sys.stdout.write(
        f"curl -s -X POST {base}/v1/predict -H 'Content-Type: application/json' -H 'X-API-Key: {key}' -d '{body}'\n"
    )
    out.print(f"Usage records: {_aib()} usage --service {summary['service_id']} --json   ·   Ctrl-C stops the server")
    if ui_url:
        out.print(f"[bold green]Workbench:[/] {ui_url}  (templates, builder, runs, services, wallet)")
    sys.stdout.flush()
    serve_http(summary["service_id"], host=host, port=port)
