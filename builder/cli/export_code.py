"""`aib export FILE --to DIR` and `aib export SERVICE_ID --bundle DIR`: a pipeline as a standalone Python project
that trains and serves the same model without the workbench, or a trained service as a self-contained bundle with a
Dockerfile.

The floor plan makes this possible: blocks use only the builder core and the runtime's block kit (pure modules, no
database, no chain), so the project carries exactly those packages, the pipeline file, its data, a Prefect flow that
runs the plan's steps in order, and a small HTTP server (no API keys or metering unless a key is set)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

from builder.errors import AibError

ROOT = Path(__file__).resolve().parents[2]
# The block kit of runtime/ (tests/unit/test_floor_plan.py keeps blocks to these) and the builder core.
RUNTIME_KIT = ("bundle", "config", "context", "evaluation", "export", "shards", "store", "training", "verification")
BUILDER_LEFT_OUT = ("cli", "ui")
# What the workbench needs and a trained model does not: the UI, the chain, the ledger, the distributed mode.
NOT_NEEDED = ("streamlit", "web3", "eth-account", "SQLAlchemy", "alembic", "typer", "rich", "s3fs", "optuna",
              "prometheus-client", "cryptography", "openpyxl")  # fmt: skip


class ExportRefused(AibError):
    """The pipeline or service cannot be exported as asked (one sentence)."""


def _dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [d for d in project["dependencies"] if not any(d.startswith(n) for n in NOT_NEEDED)]


def _copy_code(dest: Path) -> None:
    """The builder core, the block kit and every block, as the project's own packages."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    builder = dest / "builder"
    builder.mkdir(parents=True)
    for path in (ROOT / "builder").iterdir():
        if path.name in BUILDER_LEFT_OUT or path.name == "__pycache__":
            continue
        if path.is_dir():
            shutil.copytree(path, builder / path.name, ignore=ignore)
        else:
            shutil.copy2(path, builder)
    shutil.copytree(ROOT / "blocks", dest / "blocks", ignore=ignore)
    runtime = dest / "runtime"
    runtime.mkdir()
    (runtime / "__init__.py").write_text('"""The block kit of Easy AI Builder\'s runtime, as exported."""\n')
    for name in RUNTIME_KIT:
        shutil.copy2(ROOT / "runtime" / f"{name}.py", runtime)


def _pyproject(name: str) -> str:
    deps = "\n".join(f'    "{d}",' for d in _dependencies())
    return f'''[project]
name = "{name}"
version = "1.0.0"
description = "{name}: trained and served without the Easy AI Builder workbench (exported by `aib export`)"
requires-python = ">=3.11"
dependencies = [
{deps}
]

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
py-modules = ["flow", "serve"]

[tool.setuptools.packages.find]
include = ["builder*", "blocks*", "runtime*"]

[tool.setuptools.package-data]
"*" = ["*.csv", "*.json", "*.txt", "*.yaml", "*.md"]
'''


FLOW = '''"""Train, evaluate and export {name} without the workbench: a Prefect flow running the pipeline's steps.

    python flow.py            # trains; prints the metrics as JSON on its last line, the bundle's folder in service.json
    python flow.py --serve    # then serves it (serve.py) on http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("AIB_HOME", str(HERE / ".aib"))  # caches, checkpoints and the exported bundle
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoders' weights come with their packages
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from builder.pipeline import load_pipeline  # noqa: E402
from builder.plan import compile_plan  # noqa: E402
from builder.ports import PortType  # noqa: E402
from runtime.config import get_settings  # noqa: E402
from runtime.context import StepContext  # noqa: E402

PIPELINE = HERE / "pipeline.yaml"
OUTPUTS: dict[str, dict] = {{}}


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@task(cache_policy=NO_CACHE)
def run_step(pipeline, plan, node_id: str, run_id: str) -> None:
    """One step: its inputs are the outputs of the steps before it."""
    step = plan.step(node_id)
    node = pipeline.nodes[node_id]
    inputs = {{}}
    for port, src in step.inputs.items():
        src_node, src_port = src.split(".", 1)
        inputs[port] = OUTPUTS[src_node][src_port]
    ctx = StepContext(run_id=run_id, node_id=node_id, cache_key=step.cache_key, device=_device(),
                      base_dir=pipeline.base_dir, settings=get_settings(), plan=plan.to_dict())
    OUTPUTS[node_id] = node.block().run(ctx, inputs, node.params)
    print(f"  {{node_id}} ({{step.ref}}): done", file=sys.stderr)


@flow(name="{name}")
def train() -> dict:
    """Every step of the pipeline, in the plan's order; the run's metrics and the service bundle's folder."""
    pipeline = load_pipeline(PIPELINE)
    plan = compile_plan(pipeline)
    run_id = f"run-{{uuid.uuid4().hex[:12]}}"
    for step in plan.steps:
        run_step(pipeline, plan, step.node_id, run_id)
    metrics, bundle = {{}}, None
    for step in plan.steps:
        block = pipeline.nodes[step.node_id].block
        for port, value in OUTPUTS[step.node_id].items():
            kind = block.output(port).type
            if kind == PortType.METRICS and isinstance(value, dict):
                metrics.update({{k: v for k, v in value.items() if k != "evaluation"}})
            elif kind == PortType.SERVICE_BUNDLE:
                bundle = value.path
    return {{"metrics": metrics, "bundle": bundle}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve the trained model afterwards")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    result = train()
    (HERE / "service.json").write_text(json.dumps({{"bundle": result["bundle"]}}))
    print(json.dumps(result["metrics"], default=str))
    if args.serve:
        import serve

        serve.main(["--port", str(args.port)])


if __name__ == "__main__":
    main()
'''

SERVE = '''"""Serve the trained model over HTTP (FastAPI + onnxruntime), without the workbench: POST /v1/predict,
POST /v1/predict/batch, GET /health; OpenAPI docs at /docs. With SERVICE_API_KEY set, calls need it in X-API-Key.

    python serve.py [--bundle DIR] [--host 127.0.0.1] [--port 8000]
"""

# No `from __future__ import annotations`: FastAPI must see the bundle's request models (closure variables) as types.

import argparse
import hmac
import json
import os
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.concurrency import run_in_threadpool

from builder.errors import BadItem
from runtime.bundle import load_bundle

HERE = Path(__file__).resolve().parent


def create_app(bundle_dir: str | Path) -> FastAPI:
    """The service's API from its bundle (checksums verified on load)."""
    predictor = load_bundle(bundle_dir)
    key = os.environ.get("SERVICE_API_KEY", "")
    app = FastAPI(title="{name}", description="Exported from Easy AI Builder by `aib export`.")

    def check(x_api_key: str | None = Header(None)) -> None:
        if key and not hmac.compare_digest((x_api_key or "").encode(), key.encode()):
            raise HTTPException(401, "missing or wrong API key: send it in the X-API-Key header")

    def answer(items: list) -> list:
        try:
            prepare = getattr(predictor, "prepare", None)
            return predictor.predict([prepare(i) for i in items] if prepare else items)
        except BadItem as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/health")
    def health() -> dict:
        return {{"status": "ok", "labels": predictor.manifest.get("labels", [])}}

    @app.post("/v1/predict", response_model=predictor.Response, dependencies=[Depends(check)])
    async def predict(body: predictor.Request):  # type: ignore[valid-type]
        return (await run_in_threadpool(answer, [body.model_dump()]))[0]

    @app.post("/v1/predict/batch", dependencies=[Depends(check)])
    async def predict_batch(body: predictor.BatchRequest):  # type: ignore[valid-type]
        return {{"results": await run_in_threadpool(answer, predictor.items_from_batch(body))}}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="the service bundle (default: the one flow.py trained)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    bundle = args.bundle or json.loads((HERE / "service.json").read_text())["bundle"]
    uvicorn.run(create_app(bundle), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
'''

README = """# {name}

Exported from Easy AI Builder (`aib export`): the pipeline `pipeline.yaml`, its data, the blocks it uses and a
Prefect flow that trains, evaluates and exports the same model, without the workbench. In a virtualenv:

```bash
pip install .
python flow.py --serve
```

The first command installs what it needs; the second trains the model (every step as in the workbench, the same
params and seeds), prints its metrics as JSON, and serves it on http://127.0.0.1:8000 (docs at `/docs`;
`python serve.py` serves the last trained model again). Set `SERVICE_API_KEY` to require that key in `X-API-Key`.
Nothing here records usage or pays block providers: that is the workbench's part.
"""

DOCKERFILE = """# The service bundle of {name}, served by serve.py (exported by `aib export --bundle`).
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .
ENV HF_HUB_OFFLINE=1
EXPOSE 8000
CMD ["python", "serve.py", "--bundle", "bundle", "--host", "0.0.0.0", "--port", "8000"]
"""


def _data(pipeline: Any, dest: Path) -> dict[str, str]:
    """Copy every data file or folder the pipeline reads; those outside its folder go to data/ (the returned
    overrides point the exported pipeline at them)."""
    from builder.plan import data_files

    moved: dict[str, str] = {}
    for where, path in data_files(pipeline).items():
        if not path.exists():
            raise ExportRefused(f"{where} names {path}, which does not exist: fix the pipeline before exporting it")
        try:
            rel = path.resolve().relative_to(pipeline.base_dir.resolve())
        except ValueError:
            rel = Path("data") / path.name
            moved[where] = rel.as_posix()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)
    return moved


def _pipeline_text(file: Path, moved: dict[str, str]) -> str:
    import yaml

    text = file.read_text(encoding="utf-8")
    if not moved:
        return text  # as the user wrote it, comments and all
    data = yaml.safe_load(text)
    for where, rel in moved.items():
        _, node, _, param = where.split(".", 3)
        data["blocks"][node]["params"][param] = rel
    return yaml.safe_dump(data, sort_keys=False)


def export_code(file: Path, dest: Path) -> dict[str, Any]:
    """Write the standalone project of the pipeline `file` into `dest` (new or empty); what was written."""
    from builder.pipeline import load_pipeline

    pipeline = load_pipeline(file)
    if pipeline.compute.block.id == "compute.rented":
        raise ExportRefused("the exported project trains on its own machine: set the pipeline's compute to local")
    _fresh(dest)
    moved = _data(pipeline, dest)
    (dest / "pipeline.yaml").write_text(_pipeline_text(file, moved), encoding="utf-8")
    _copy_code(dest)
    name = pipeline.name
    (dest / "pyproject.toml").write_text(_pyproject(name), encoding="utf-8")
    (dest / "flow.py").write_text(FLOW.format(name=name), encoding="utf-8")
    (dest / "serve.py").write_text(SERVE.format(name=name), encoding="utf-8")
    (dest / "README.md").write_text(README.format(name=name), encoding="utf-8")
    return {"project": str(dest), "pipeline": name, "data_moved": moved}


def export_bundle(bundle_dir: Path, name: str, dest: Path) -> dict[str, Any]:
    """Write a trained service's bundle with what serves it and a Dockerfile into `dest` (new or empty)."""
    from runtime.bundle import read_manifest, verify_bundle

    verify_bundle(bundle_dir, read_manifest(bundle_dir))
    _fresh(dest)
    shutil.copytree(bundle_dir, dest / "bundle")
    _copy_code(dest)
    pyproject = _pyproject(name).replace('py-modules = ["flow", "serve"]', 'py-modules = ["serve"]')
    (dest / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (dest / "serve.py").write_text(SERVE.format(name=name), encoding="utf-8")
    (dest / "Dockerfile").write_text(DOCKERFILE.format(name=name), encoding="utf-8")
    (dest / "README.md").write_text(
        f"# {name}\n\nA trained service exported by `aib export --bundle`: `bundle/` (the ONNX model and its "
        "manifest, checksums verified on load) and `serve.py`.\n\n```bash\npip install .\n"
        "python serve.py --bundle bundle\n```\n\n"
        "Or `docker build -t " + name + " . && docker run -p 8000:8000 " + name + "`. Set `SERVICE_API_KEY` to "
        "require that key in `X-API-Key`.\n",
        encoding="utf-8",
    )
    return {"bundle": str(dest), "service": name}


def _fresh(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise ExportRefused(f"{dest} is not empty: export into a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)


__all__ = ["ExportRefused", "export_bundle", "export_code"]
