"""What every `aib` command module shares: the Typer apps, the consoles, and small output helpers."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from builder.money import format_aic, parse_amount

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

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _aic_option(value: str, option: str) -> int:
    """An AIC amount given on the command line ('0.36', '0.36 AIC', '1200 wei') in wei, above 0; exit 2 if not."""
    try:
        wei = parse_amount(value if any(c.isalpha() for c in value) else f"{value} AIC")
    except ValueError as exc:
        _fail(f"{option}: {exc}")
    if wei <= 0:
        _fail(f"{option} must be more than 0 AIC")
    return wei


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


def _table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    table = Table(*columns, show_lines=False)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    out.print(table)


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
        how = (
            f"by {m.get('cv_folds', '?')}-fold cross-validation"
            if m.get("eval_split") == "cross-validation"
            else f"on the {m.get('eval_split', 'evaluation')} set"
        )
        out.print(f"accuracy {how}: [bold]{m['accuracy']:.3f}[/] ({m.get('eval_examples', '?')} examples)")
        if m.get("metric_note"):
            out.print(f"[yellow]{m['metric_note']}[/]", highlight=False)
    if "threshold" in m and "wrong_answer_target" in m:
        out.print(f"fallback below confidence {m['threshold']:.3f}, chosen for at most "
                  f"{m['wrong_answer_target']:.0%} wrong answers", highlight=False)  # fmt: skip
    for warning in m.get("data_warnings") or []:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    out.print(f"cost: {summary['cost']['total']} (quoted {format_aic(summary['cost']['quote_wei'])})")
    if summary["service_id"]:
        out.print(f"service: [bold]{summary['service_id']}[/]  →  {_aib()} serve {summary['service_id']}")
