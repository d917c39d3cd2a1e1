"""Model versions: every run of a pipeline that ends in a service adds a version of the service named after the
pipeline; its stable endpoint (`aib serve NAME`) serves the live one, which promote and rollback switch.

A version keeps what produced it: the pipeline file, the plan hash, the data steps' cache keys (their content
hashes), the metrics and the held-out answers (the run's evaluation), so two versions can be compared answer by
answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import NotFoundError, ServeError
from runtime.db import Promotion, Run, Service, Step

SHOWN_METRICS = ("accuracy", "macro_f1", "mae", "rmse", "threshold", "eval_examples", "eval_split")
MAX_CHANGED = 20


def versions_of(session: Session, name: str) -> list[Service]:
    """The versions of service `name`, oldest first (version 1 is the first trained)."""
    return list(session.scalars(select(Service).where(Service.name == name).order_by(Service.created_at, Service.id)))


def names(session: Session) -> list[str]:
    """Every service name, alphabetically."""
    return sorted(set(session.scalars(select(Service.name))))


def live_service(session: Session, name: str) -> Service:
    """The version the stable endpoint of `name` serves: the last promoted, else the newest."""
    found = versions_of(session, name)
    if not found:
        raise NotFoundError(f"no service named {name!r}; `aib services list` shows the services")
    last = session.scalar(select(Promotion).where(Promotion.name == name).order_by(Promotion.id.desc()).limit(1))
    if last is not None:
        return next(s for s in found if s.id == last.service_id)
    return found[-1]


def number_of(session: Session, service: Service) -> int:
    """The version number of a service among those of its name."""
    return [s.id for s in versions_of(session, service.name)].index(service.id) + 1


def resolve(session: Session, name: str, version: str) -> Service:
    """Version `version` of `name`: its number (`3` or `v3`) or its service id; NotFoundError in one sentence."""
    found = versions_of(session, name)
    if not found:
        raise NotFoundError(f"no service named {name!r}; `aib services list` shows the services")
    text = version.strip().lower().removeprefix("v")
    if text.isdigit() and 1 <= int(text) <= len(found):
        return found[int(text) - 1]
    by_id = next((s for s in found if s.id == version.strip()), None)
    if by_id is not None:
        return by_id
    raise NotFoundError(
        f"service {name!r} has no version {version!r}; its versions are 1 to {len(found)} "
        f"(`aib services versions {name}`)"
    )


def pin(session: Session, name: str) -> Service:
    """The live version of `name`, recorded as such when nothing was promoted yet, so that a later run of its
    pipeline does not replace what a running stable endpoint serves until it is promoted."""
    live = live_service(session, name)
    if session.scalar(select(Promotion.id).where(Promotion.name == name).limit(1)) is None:
        session.add(Promotion(name=name, service_id=live.id, action="pin"))
        session.commit()
    return live


def switch(session: Session, name: str, version: str, action: str) -> dict[str, Any]:
    """Make version `version` of `name` live (`action` promote or rollback); {name, version, service_id,
    previous}. A rollback goes only to an older version; both refuse a version of another kind of model or whose
    files are damaged, in one sentence."""
    from runtime.bundle import read_manifest, verify_bundle

    target = resolve(session, name, version)
    live = live_service(session, name)
    number, live_number = number_of(session, target), number_of(session, live)
    if action == "rollback" and number >= live_number:
        raise ServeError(
            f"version {number} of {name!r} is not older than the live version {live_number}; "
            f"`aib services promote {name} {number}` makes it live"
        )
    try:
        manifest = read_manifest(Path(target.bundle_dir))
        verify_bundle(Path(target.bundle_dir), manifest)
    except (OSError, ValueError, ServeError) as exc:
        raise ServeError(f"version {number} of {name!r} cannot be served: {exc}") from None
    kind, live_kind = manifest.get("type"), read_manifest(Path(live.bundle_dir)).get("type")
    if kind != live_kind:
        raise ServeError(
            f"version {number} of {name!r} is a {kind} model and the live version {live_number} a {live_kind}: "
            "its callers could not send it the same requests"
        )
    session.add(Promotion(name=name, service_id=target.id, action=action))
    session.commit()
    return {"name": name, "version": number, "service_id": target.id, "previous": live_number}


def describe(session: Session, name: str) -> list[dict[str, Any]]:
    """Every version of `name` with what produced it and how good it is; `live` marks the one served."""
    found = versions_of(session, name)
    if not found:
        raise NotFoundError(f"no service named {name!r}; `aib services list` shows the services")
    live = live_service(session, name).id
    out = []
    for number, svc in enumerate(found, start=1):
        run = session.get(Run, svc.run_id)
        steps = (run.plan or {}).get("steps", []) if run is not None else []
        metrics = (run.metrics or {}) if run is not None else {}
        out.append({
            "version": number,
            "service_id": svc.id,
            "live": svc.id == live,
            "run_id": svc.run_id,
            "created_at": svc.created_at.isoformat(timespec="seconds"),
            "pipeline_path": run.pipeline_path if run is not None else None,
            "plan_hash": svc.plan_hash,
            "data": {s["node_id"]: s["cache_key"] for s in steps if s.get("kind") == "data"},
            "metrics": {k: metrics[k] for k in SHOWN_METRICS if k in metrics},
        })  # fmt: skip
    return out


def _answers(session: Session, run_id: str) -> dict[str, Any] | None:
    """The held-out answers of a run's first model node (its evaluation), or None."""
    for step in session.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.position)):
        evaluation = (step.metrics or {}).get("evaluation")
        if evaluation and "answers" in evaluation:
            return evaluation
    return None


def compare(session: Session, name: str, a: str, b: str) -> dict[str, Any]:
    """Versions `a` and `b` of `name` side by side: their metrics, and the held-out examples whose answer changed
    (matched by question text when both have one, else by position when both were measured on the same data)."""
    va, vb = resolve(session, name, a), resolve(session, name, b)
    rows = {row["service_id"]: row for row in describe(session, name)}
    ra, rb = rows[va.id], rows[vb.id]
    ea, eb = _answers(session, va.run_id), _answers(session, vb.run_id)
    out: dict[str, Any] = {
        "name": name,
        "a": {k: ra[k] for k in ("version", "service_id", "run_id", "plan_hash", "data", "metrics", "live")},
        "b": {k: rb[k] for k in ("version", "service_id", "run_id", "plan_hash", "data", "metrics", "live")},
        "same_data": ra["data"] == rb["data"],
    }
    if ea is None or eb is None or ea.get("kind") != eb.get("kind"):
        out["changed"] = None
        out["changed_note"] = "one of the versions has no stored held-out answers (trained before they were kept)"
        return out
    out.update(_changed(ea, eb, out["same_data"]))
    return out


def _changed(ea: dict[str, Any], eb: dict[str, Any], same_data: bool) -> dict[str, Any]:
    ka, kb = ea.get("keys"), eb.get("keys")
    if ka and kb:
        index_b = {k: i for i, k in enumerate(kb)}
        pairs = [(i, index_b[k], k) for i, k in enumerate(ka) if k in index_b]
        how = "by question"
    elif same_data and len(ea["answers"]) == len(eb["answers"]):
        pairs = [(i, i, None) for i in range(len(ea["answers"]))]
        how = "by position (the same held-out data)"
    else:
        return {"changed": None, "changed_note": "the versions were measured on different held-out data"}
    changed, fixed, broken = [], 0, 0
    regression = ea.get("kind") == "regression"
    for i, j, key in pairs:
        truth, said_a, said_b = ea["truth"][i], ea["answers"][i], eb["answers"][j]
        if regression:
            moved = abs(said_a - said_b) > 0.05  # a twentieth of the steering range
            better = abs(said_b - truth) < abs(said_a - truth)
        else:
            moved = said_a != said_b
            better = said_b == truth
        if not moved:
            continue
        if regression:
            fixed, broken = fixed + better, broken + (not better)
        else:
            fixed, broken = fixed + (said_b == truth), broken + (said_a == truth)
        changed.append({"example": key if key is not None else i, "true": truth, "a": said_a, "b": said_b})
    if regression:
        changed.sort(key=lambda c: -abs(c["a"] - c["b"]))
    return {
        "compared": len(pairs),
        "matched": how,
        "changed_count": len(changed),
        "fixed": int(fixed),  # wrong in a, right in b (regression: closer in b)
        "broken": int(broken),  # right in a, wrong in b (regression: further in b)
        "changed": changed[:MAX_CHANGED],
    }


__all__ = ["compare", "describe", "live_service", "names", "number_of", "pin", "resolve", "switch", "versions_of"]
