"""`aib keys|usage|blocks|templates|runs|services|preview`: keys and read-only listings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from builder.cli.base import (
    JsonFlag,
    _fail,
    _print_json,
    _print_run,
    _session,
    _table,
    app,
    blocks_app,
    err,
    keys_app,
    out,
    runs_app,
    services_app,
    templates_app,
)
from builder.money import format_aic


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

    from runtime.config import template_files

    rows = []
    for path in template_files():
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


@services_app.command("versions")
def services_versions(
    name: Annotated[str, typer.Argument(help="Service name (its pipeline's name)")], json_: JsonFlag = False
) -> None:
    """The versions of a service: what produced each (pipeline file, plan, data hashes), its metrics, which is live."""
    from runtime.versions import describe

    with _session() as s:
        rows = describe(s, name)
    if json_:
        _print_json(rows)
        return
    shown = [
        {
            **r,
            "live": "live" if r["live"] else "",
            "accuracy": r["metrics"].get("accuracy", r["metrics"].get("mae")),
            "plan": r["plan_hash"][:12],
        }
        for r in rows
    ]
    _table(["version", "live", "service_id", "run_id", "created_at", "accuracy", "plan", "pipeline_path"], shown)


def _version_ref(ref: str) -> tuple[str, str]:
    """(name, version) of `NAME@N` or of a service id."""
    from runtime.db import Service

    if "@" in ref:
        name, _, version = ref.rpartition("@")
        return name, version
    with _session() as s:
        svc = s.get(Service, ref)
        if svc is None:
            _fail(f"no service {ref!r}: name a version as NAME@N (e.g. faq-chatbot@2) or by its service id")
        return svc.name, ref


@services_app.command("compare")
def services_compare(
    a: Annotated[str, typer.Argument(help="A version: NAME@N or a service id")],
    b: Annotated[str, typer.Argument(help="Another version of the same service")],
    json_: JsonFlag = False,
) -> None:
    """Two versions side by side: their metrics, and the held-out examples whose answer changed."""
    from runtime.versions import compare

    (name_a, va), (name_b, vb) = _version_ref(a), _version_ref(b)
    if name_a != name_b:
        _fail(f"{a} is a version of {name_a!r} and {b} of {name_b!r}: compare two versions of one service")
    with _session() as s:
        found = compare(s, name_a, va, vb)
    if json_:
        _print_json(found)
        return
    keys = sorted(set(found["a"]["metrics"]) | set(found["b"]["metrics"]))
    rows = [{"metric": k, f"v{found['a']['version']}": found["a"]["metrics"].get(k),
             f"v{found['b']['version']}": found["b"]["metrics"].get(k)} for k in keys]  # fmt: skip
    _table(["metric", f"v{found['a']['version']}", f"v{found['b']['version']}"], rows)
    if found["changed"] is None:
        out.print(f"answers not compared: {found['changed_note']}", highlight=False)
        return
    out.print(
        f"{found['changed_count']} of {found['compared']} held-out examples changed their answer "
        f"(matched {found['matched']}): {found['fixed']} fixed, {found['broken']} broken",
        highlight=False,
    )
    _table(["example", "true", "a", "b"], found["changed"])


def _switch(name: str, version: str, action: str) -> None:
    from runtime.versions import switch

    with _session() as s:
        done = switch(s, name, version, action)
    out.print(
        f"{name}: version {done['version']} ({done['service_id']}) is live, was version {done['previous']}; "
        f"`aib serve {name}` servers switch within a second, calls in flight finish on the old one",
        highlight=False,
    )


@services_app.command("promote")
def services_promote(
    name: Annotated[str, typer.Argument(help="Service name")],
    version: Annotated[str, typer.Argument(help="Version number (or its service id)")],
) -> None:
    """Make a version the one the service's stable endpoint (`aib serve NAME`) serves, with no downtime."""
    _switch(name, version, "promote")


@services_app.command("rollback")
def services_rollback(
    name: Annotated[str, typer.Argument(help="Service name")],
    version: Annotated[str, typer.Argument(help="An older version number (or its service id)")],
) -> None:
    """Go back to an older version on the service's stable endpoint, with no downtime."""
    _switch(name, version, "rollback")


@app.command("export")
def export(
    target: Annotated[str, typer.Argument(help="A pipeline YAML file (with --to) or a service id (with --bundle)")],
    to: Annotated[Path | None, typer.Option("--to", help="Write the pipeline as a standalone project here")] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Write the trained service with its server and a Dockerfile here")
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Export a pipeline as a standalone Python project (trains and serves without the workbench), or a trained
    service as a self-contained bundle with a Dockerfile."""
    from builder.cli.export_code import export_bundle, export_code

    if (to is None) == (bundle is None):
        _fail("give either --to DIR (a pipeline file as a project) or --bundle DIR (a service id as a bundle)")
    if to is not None:
        done = export_code(Path(target), to)
        hint = f"cd {to} && pip install . && python flow.py --serve"
    else:
        from runtime.runs import get_service

        with _session() as s:
            svc = get_service(s, target)
            bundle_dir, name = Path(svc.bundle_dir), svc.name
        done = export_bundle(bundle_dir, name, bundle)
        hint = f"cd {bundle} && docker build -t {name} . (or pip install . && python serve.py --bundle bundle)"
    if json_:
        _print_json(done)
        return
    out.print(f"exported to {to or bundle}; {hint}", highlight=False)


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
