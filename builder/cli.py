"""The `aib` command line: validate, run, serve, keys, usage, and catalog listings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from builder.errors import AibError, ValidationError
from builder.money import format_aic
from chain import cli as chain_cli

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Easy AI Builder: compose AI services from marketplace blocks, train, serve, get paid.",
)
keys_app = typer.Typer(no_args_is_help=True, help="Create and revoke API keys of a service.")
blocks_app = typer.Typer(no_args_is_help=True, help="The block catalog.")
templates_app = typer.Typer(no_args_is_help=True, help="Pipeline templates to start from.")
runs_app = typer.Typer(no_args_is_help=True, help="Runs and their results.")
services_app = typer.Typer(no_args_is_help=True, help="Trained services.")
app.add_typer(keys_app, name="keys")
app.add_typer(blocks_app, name="blocks")
app.add_typer(templates_app, name="templates")
app.add_typer(runs_app, name="runs")
app.add_typer(services_app, name="services")
app.add_typer(chain_cli.chain_app, name="chain")
app.add_typer(chain_cli.wallet_app, name="wallet")
app.add_typer(chain_cli.assets_app, name="assets")
app.command("settle")(chain_cli.settle_command)
app.command("payouts")(chain_cli.payouts_command)

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def _aib() -> str:
    """How the user can type this command: `aib` when it is on PATH, else its path (e.g. `.venv/bin/aib`)."""
    if shutil.which("aib"):
        return "aib"
    script = Path(sys.executable).parent / "aib"
    if not script.exists():
        return "aib"
    try:
        return os.path.relpath(script)
    except ValueError:
        return str(script)


def _session() -> Any:
    from runtime.db import session_factory

    return session_factory()()


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a param: node.param=value")] = None,
) -> None:
    """Check a pipeline file; prints `valid` or every problem with its YAML path and line."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan

    try:
        compile_plan(load_pipeline(file, set_ or []))
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
    run_id: Annotated[str | None, typer.Option("--run-id", help="Use this run id (the UI passes one)")] = None,
) -> None:
    """Train a pipeline: validate, compile, run every step as a Prefect flow, export the service."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from builder.progress import RichReporter
    from runtime.runner import execute_run
    from runtime.runs import create_run, get_run, reap_stale_runs, run_summary

    pipeline = load_pipeline(file, set_ or [])
    plan = compile_plan(pipeline)
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
        if json_:
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


def _payment_check(plan: Any) -> tuple[Any, int]:
    """When runs are paid on chain: the chain and the deposit, refused (before any work) if unaffordable."""
    from runtime import settlement as pay

    if not pay.payments_enabled():
        return None, 0
    chain = pay.Chain.connect()
    amount = pay.deposit_amount(chain, plan)
    pay.check_funds(chain, amount)
    return chain, amount


def _start_local_chain_for_payments() -> bool:
    """Start the local chain runs are paid on (unless AIB_PAYMENTS=off); True when this call started it."""
    if os.environ.get("AIB_PAYMENTS", "auto").lower() == "off" or os.environ.get("AIB_RPC_URL"):
        return False
    from chain.node import local_status, start_local

    if local_status()["running"]:
        return False
    try:
        status = start_local()
    except AibError as exc:
        err.print(f"warning: runs will not be paid on chain: {exc}", highlight=False, markup=False)
        return False
    out.print(f"local chain at {status['rpc_url']}: runs are paid in AIC through the escrow", highlight=False)
    return True


def _pay_deposit(chain: Any, run_id: str, amount: int, quiet: bool) -> None:
    from runtime import settlement as pay
    from runtime.runs import fail_run

    try:
        with _session() as s:
            row = pay.deposit(s, chain, run_id, amount)
    except AibError as exc:
        with _session() as s:
            fail_run(s, run_id, f"the deposit failed, so the run did not start: {exc}")
        raise
    if not quiet:
        out.print(f"deposited {format_aic(amount)} in escrow (tx {row.deposit_tx})", highlight=False)


def _settle_after_run(chain: Any, run_id: str, quiet: bool) -> None:
    from runtime import settlement as pay

    try:
        with _session() as s:
            row = pay.settle_run(s, chain, run_id)
    except AibError as exc:
        err.print(f"settlement pending: {exc}; `{_aib()} settle --pending` retries", highlight=False, markup=False)
        return
    if not quiet:
        out.print(
            f"paid {len(row.payouts)} providers {format_aic(sum(p['amount_wei'] for p in row.payouts))}, "
            f"refunded {format_aic(row.refund_wei or 0)} (tx {row.settle_tx})",
            highlight=False,
        )


def _print_run(summary: dict[str, Any]) -> None:
    if summary["status"] != "succeeded":
        err.print(
            f"[bold red]run {summary['run_id']} {summary['status']}:[/] {summary['error']}",
            highlight=False,
            soft_wrap=True,
        )
        return
    m = summary["metrics"]
    if "accuracy" in m:
        out.print(
            f"accuracy on the {m.get('eval_split', 'evaluation')} set: [bold]{m['accuracy']:.3f}[/] "
            f"({m.get('eval_examples', '?')} examples)"
        )
    out.print(f"cost: {summary['cost']['total']} (quoted {format_aic(summary['cost']['quote_wei'])})")
    if summary["service_id"]:
        out.print(f"service: [bold]{summary['service_id']}[/]  →  {_aib()} serve {summary['service_id']}")


@app.command()
def serve(
    service_id: Annotated[str, typer.Argument(help="Service id (from `aib run` or `aib services list`)")],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads (0: all cores)")] = 0,
) -> None:
    """Serve a trained service over HTTP (OpenAPI docs at /docs)."""
    from runtime.runs import get_service
    from runtime.serving import ensure_port_free
    from runtime.serving import serve as serve_http

    with _session() as s:
        get_service(s, service_id)
    ensure_port_free(host, port)
    err.print(
        f"serving {service_id} on http://{host}:{port}  (docs: http://{host}:{port}/docs) — Ctrl-C stops",
        highlight=False,
    )
    serve_http(service_id, host=host, port=port, threads=threads or None)


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8501,
) -> None:
    """Start the browser workbench (build, run, serve, pay) and print its URL; Ctrl-C stops it."""
    from builder.ui.launch import start_ui, stop_ui

    proc, url = start_ui(host, port)
    out.print(f"[bold green]Easy AI Builder workbench:[/] {url}   (Ctrl-C stops it)")
    try:
        proc.wait()
    finally:
        stop_ui(proc)


@keys_app.command("create")
def keys_create(service_id: Annotated[str, typer.Argument(help="Service id")]) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    from runtime.keys import create_key

    with _session() as s:
        key, record = create_key(s, service_id)
    err.print(f"created {record.id} for {service_id}; store the key now, it is not shown again:")
    sys.stdout.write(key + "\n")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The API key, or its id (key_…)")]) -> None:
    """Revoke an API key (effective within 2 seconds on running servers)."""
    from runtime.keys import revoke_key

    with _session() as s:
        record = revoke_key(s, key)
    out.print(f"revoked {record.id}")


@keys_app.command("list")
def keys_list(
    service: Annotated[str | None, typer.Option("--service", help="Only this service")] = None, json_: JsonFlag = False
) -> None:
    """List API keys (ids only; secrets are never stored)."""
    from runtime.keys import list_keys

    with _session() as s:
        rows = [
            {
                "id": k.id,
                "service_id": k.service_id,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in list_keys(s, service)
        ]
    if json_:
        _print_json(rows)
        return
    _table(["id", "service_id", "created_at", "revoked_at"], rows)


@app.command()
def usage(
    service: Annotated[str | None, typer.Option("--service", help="Only this service's calls")] = None,
    run_: Annotated[str | None, typer.Option("--run", help="Only this run's records")] = None,
    json_: JsonFlag = False,
) -> None:
    """Usage records: which block, which provider, quantity, unit, amount."""
    from runtime.ledger import list_usage, usage_dict

    with _session() as s:
        rows = [usage_dict(u) for u in list_usage(s, run_id=run_, service_id=service)]
    if json_:
        _print_json(rows)
        return
    _table(["id", "run_id", "service_id", "block_id", "provider", "quantity", "unit", "amount_wei"], rows)
    out.print(f"{len(rows)} records, total {format_aic(sum(r['amount_wei'] for r in rows))}")


@blocks_app.command("list")
def blocks_list(json_: JsonFlag = False) -> None:
    """Every block in the catalog with kind, ports and price."""
    from builder.registry import all_blocks

    specs = [b.spec_dict() for b in all_blocks()]
    if json_:
        _print_json(specs)
        return
    rows = [
        {
            "block": f"{s['id']}@{s['version']}",
            "kind": s["kind"],
            "inputs": ", ".join(f"{p['name']}:{p['type']}" for p in s["inputs"]) or "-",
            "outputs": ", ".join(f"{p['name']}:{p['type']}" for p in s["outputs"]) or "-",
            "price": f"{format_aic(s['price']['amount_wei'])}/{s['price']['unit']}",
            "description": s["description"],
        }
        for s in specs
    ]
    _table(["block", "kind", "inputs", "outputs", "price", "description"], rows)


@templates_app.command("list")
def templates_list(json_: JsonFlag = False) -> None:
    """Pipeline templates shipped in templates/."""
    import yaml

    from runtime.config import templates_dir

    rows = []
    for path in sorted(templates_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows.append(
            {
                "template": path.stem,
                "file": str(path),
                "description": " ".join(str(data.get("description", "")).split()),
            }
        )
    if json_:
        _print_json(rows)
        return
    _table(["template", "file", "description"], rows)


@runs_app.command("list")
def runs_list(json_: JsonFlag = False, limit: Annotated[int, typer.Option(help="Most recent N")] = 50) -> None:
    """Recent runs with their state."""
    from runtime.runs import list_runs, reap_stale_runs

    with _session() as s:
        reap_stale_runs(s)
        rows = [
            {
                "run_id": r.id,
                "pipeline": r.name,
                "status": r.status,
                "accuracy": (r.metrics or {}).get("accuracy"),
                "service_id": r.service_id,
                "created_at": r.created_at.isoformat(timespec="seconds"),
                "error": r.error,
            }
            for r in list_runs(s, limit)
        ]
    if json_:
        _print_json(rows)
        return
    _table(["run_id", "pipeline", "status", "accuracy", "service_id", "created_at", "error"], rows)


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(help="Run id")], json_: JsonFlag = False) -> None:
    """One run: steps, metrics, cost and usage."""
    from runtime.runs import get_run, reap_stale_runs, run_summary

    with _session() as s:
        reap_stale_runs(s)
        summary = run_summary(s, get_run(s, run_id))
    if json_:
        _print_json(summary)
        return
    out.print(f"run [bold]{summary['run_id']}[/] · {summary['pipeline']} · {summary['status']}")
    if summary["error"]:
        out.print(f"reason: {summary['error']}", highlight=False)
    _table(["node_id", "block", "status", "cached", "seconds", "error"], summary["steps"])
    _print_run(summary)


@services_app.command("list")
def services_list(json_: JsonFlag = False) -> None:
    """Trained services that can be served."""
    from sqlalchemy import select

    from runtime.db import Service

    with _session() as s:
        rows = [
            {
                "service_id": v.id,
                "pipeline": v.name,
                "run_id": v.run_id,
                "bundle_dir": v.bundle_dir,
                "created_at": v.created_at.isoformat(timespec="seconds"),
            }
            for v in s.scalars(select(Service).order_by(Service.created_at.desc()))
        ]
    if json_:
        _print_json(rows)
        return
    _table(["service_id", "pipeline", "run_id", "created_at"], rows)


@app.command()
def preview(
    file: Annotated[Path, typer.Argument(help="Pipeline YAML file")],
    node: Annotated[str, typer.Argument(help="Data node id, e.g. faq")],
    rows: Annotated[int, typer.Option(help="Rows to sample")] = 5,
    seed: Annotated[int | None, typer.Option(help="Seed of the random sample")] = None,
    json_: JsonFlag = False,
) -> None:
    """A random sample of a data block's rows."""
    from builder.pipeline import load_pipeline

    pipeline = load_pipeline(file)
    n = pipeline.nodes.get(node)
    if n is None or not hasattr(n.block, "preview"):
        _fail(f"{node!r} is not a data block of {file} that can be previewed")
    sample = n.block().preview(n.params, pipeline.base_dir, rows=rows, seed=seed)
    if json_:
        _print_json(sample)
        return
    _table(list(sample[0]) if sample else [], sample)


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
    started_chain = _start_local_chain_for_payments()
    ui_proc, ui_url = None, None
    try:
        if ui_port:
            from builder.ui.launch import start_ui

            ui_proc, ui_url = start_ui(host, ui_port)
            out.print(f"[bold green]Workbench (open it in your browser):[/] {ui_url}")
        _quickstart(template, path, host, port, ui_url)
    finally:  # Ctrl-C stops everything `make run` started; balances stay in the chain's state file
        if ui_proc is not None:
            from builder.ui.launch import stop_ui

            stop_ui(ui_proc)
        if started_chain:
            from chain.node import stop_local

            stop_local()


def _quickstart(template: str, path: Path, host: str, port: int, ui_url: str | None = None) -> None:
    """Train `template` (paid when a chain is available), create a demo key, print a curl line, serve."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from builder.progress import RichReporter
    from runtime.keys import create_key
    from runtime.runner import execute_run
    from runtime.runs import create_run, reap_stale_runs
    from runtime.serving import serve as serve_http

    out.print(f"training template [bold]{template}[/] (first run also starts Prefect and loads MiniLM)…")
    pipeline = load_pipeline(path)
    plan = compile_plan(pipeline)
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


def _table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    table = Table(*columns, show_lines=False)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    out.print(table)


def main() -> None:
    """Entry point of the `aib` console script: every AibError becomes `error: …` and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
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


if __name__ == "__main__":
    main()
