"""The HTTP API of a trained service: FastAPI + onnxruntime, API keys, per-call metering."""

# No `from __future__ import annotations` here: FastAPI must see the per-bundle request models
# (closure variables) as real types, not strings.

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from builder.errors import BadItem, ServeError
from runtime import versions
from runtime.bundle import load_bundle
from runtime.db import Service, get_engine, session_factory
from runtime.keys import find_active_key, find_active_key_of
from runtime.metering import ServiceBilling, UsageWriter, idempotency_hash
from runtime.processes import port_free
from runtime.runs import get_service
from runtime.service_metrics import CONTENT_TYPE, Measured, ServiceMetrics, metrics_key_ok

MAX_BODY_BYTES = 1_000_000
# /metrics has its own optional key (checked by its route), never an API key: a monitoring system is not a client.
OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
KEY_HEADERS = [(b"www-authenticate", b"X-API-Key")]
KEY_CACHE_SECONDS = 2.0  # a revoked key stops working within this time
KEY_CACHE_MAX = 10_000
PROMOTION_POLL_S = 0.5  # how often a stable endpoint looks for a promoted version


class Health(BaseModel):
    status: str = Field(description="'ok' when the model is loaded")
    service_id: str
    pipeline: str
    plan_hash: str
    intents: list[str] = Field(default_factory=list)
    version: int | None = Field(None, description="On a stable endpoint (`aib serve NAME`): the live version")


@dataclass(frozen=True)
class Version:
    """One version of a service as loaded to answer: a request takes the live one when it starts and finishes on
    it, whatever is promoted meanwhile."""

    service_id: str
    number: int | None  # None when served by id rather than as its name's stable endpoint
    plan_hash: str
    run_id: str
    billing: ServiceBilling
    predictor: Any


def _load_version(service: Service, number: int | None, threads: int | None) -> Version:
    billing = ServiceBilling(service.id, service.block_id, service.version, service.provider, service.call_price_wei)
    predictor = load_bundle(service.bundle_dir, threads=threads)
    return Version(service.id, number, service.plan_hash, service.run_id or "", billing, predictor)


class ErrorBody(BaseModel):
    error: str = Field(description="One sentence saying what is wrong")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if err.get("type") == "missing":
            parts.append(f"{loc} is required")
            continue
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


async def _refuse(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """The outermost ASGI layer of a service: a request to a keyed route is refused (401) before one byte of its
    body is read, and no body is read past MAX_BODY_BYTES (413), whatever its Content-Length or chunking claims.
    The routes then get the body from memory, so neither JSON parsing nor a multipart spool sees more."""

    def __init__(self, app: Any, key_ok: Callable[[str], Awaitable[bool]], limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.key_ok, self.limit = app, key_ok, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-api-key")
        if not key:
            await _refuse(send, 401, "missing API key: send it in the X-API-Key header", KEY_HEADERS)
            return
        if not await self.key_ok(key):
            await _refuse(send, 401, "invalid or revoked API key", KEY_HEADERS)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await _refuse(send, 413, f"the request body is {int(length)} bytes; the limit is {self.limit}")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _refuse(send, 413, f"the request body is over {self.limit} bytes; the limit is {self.limit}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(
    service_id: str, threads: int | None = None, on_providers: dict[str, Any] | None = None,
    metrics_key: str | None = None,
) -> FastAPI:  # fmt: skip
    """Build the FastAPI app serving `service_id` (bundle loaded once; checksums verified), or, given a service's
    name, its stable endpoint: the live version (runtime/versions.py), switched without a pause when another is
    promoted (requests in flight finish on the version they started on; keys of any version of the name work).
    `on_providers` ({replicas, audit_rate}): the answers come from providers' machines hosting the service, through
    the coordinator's gateway (runtime/protocol/gateway.py); keys and metering stay here. `metrics_key`: what a
    scrape of /metrics must send as `Authorization: Bearer …` (None: /metrics is open, like /health)."""
    Session = session_factory()
    with Session() as s:
        stable = s.get(Service, service_id) is None and bool(versions.versions_of(s, service_id))
        if stable and on_providers is not None:
            raise ServeError(
                f"{service_id!r} names a service, whose stable endpoint answers here; serve one version's id "
                "with --on-providers"
            )
        svc = versions.pin(s, service_id) if stable else get_service(s, service_id)
        number = versions.number_of(s, svc) if stable else None
        pipeline = svc.name
        metrics = ServiceMetrics(svc.id, svc.name, svc.plan_hash, svc.version, svc.run_id or "")
        first = _load_version(svc, number, threads)
    if on_providers is not None:
        from runtime.protocol.gateway import HostedPredictor

        hosted = HostedPredictor(service_id, first.predictor, say=_log, **on_providers).start()
        first = Version(first.service_id, None, first.plan_hash, first.run_id, first.billing, hosted)
    live = [first]  # live[0]: the version a new request is answered by (one reference, swapped whole)
    predictor = first.predictor  # the request and answer schemas, fixed for the life of the server
    writer = UsageWriter(get_engine(), first.billing, on_written=metrics.usage_written)
    max_batch = int(predictor.manifest.get("service", {}).get("max_batch", 64))
    key_cache: dict[str, tuple[bool, float]] = {}
    refused: set[str] = set()  # promoted versions this server could not switch to (said once in its log)

    def _promoted() -> Version | None:
        with Session() as s:
            target = versions.live_service(s, pipeline)
            if target.id == live[0].service_id or target.id in refused:
                return None
            return _load_version(target, versions.number_of(s, target), threads)

    async def follow_promotions() -> None:
        """Switch to the promoted version: loaded beside the live one first, then swapped in one assignment."""
        while True:
            await asyncio.sleep(PROMOTION_POLL_S)
            try:
                new = await run_in_threadpool(_promoted)
            except Exception as exc:  # a damaged bundle or a database hiccup: keep serving, say why
                _log(f"the promoted version of {pipeline} could not be loaded ({exc}); still serving the live one")
                await asyncio.sleep(5 * PROMOTION_POLL_S)
                continue
            if new is None:
                continue
            if new.predictor.Request.model_json_schema() != predictor.Request.model_json_schema():
                refused.add(new.service_id)
                _log(f"version {new.number} of {pipeline} takes other requests; still serving {live[0].number}")
                continue
            live[0] = new
            metrics.set_model(new.service_id, pipeline, new.plan_hash, new.billing.version, new.run_id)
            _log(f"{pipeline}: now serving version {new.number} ({new.service_id})")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        writer.start()
        follower = asyncio.create_task(follow_promotions()) if stable else None
        yield
        if follower is not None:
            follower.cancel()
        writer.stop()
        if on_providers is not None:
            predictor.close()

    app = FastAPI(
        title=f"{pipeline} — Easy AI Builder service",
        version="1",
        description=(
            (
                f"The live version of service `{pipeline}` (at start version {number}, `{first.service_id}`). "
                if stable
                else f"Service `{service_id}` trained by pipeline `{pipeline}` (plan {first.plan_hash[:12]}). "
            )
            + "Send your API key in the `X-API-Key` header. Every successful call is metered."
        ),
        lifespan=lifespan,
    )
    app.state.writer = writer
    app.state.predictor = predictor
    app.state.metrics = metrics
    app.state.live = live

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": _validation_message(exc)})

    # Starlette's own HTTPException too: FastAPI raises it for a body it cannot parse ("There was an error parsing
    # the body"), which the handler of FastAPI's subclass would not catch (found by the schemathesis fuzz test).
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if detail == "There was an error parsing the body":
            detail = "the request body cannot be parsed as the content type it declares"
        return JSONResponse(
            status_code=exc.status_code, content={"error": detail}, headers=getattr(exc, "headers", None)
        )

    def _cached_key(key: str) -> bool | None:
        hit = key_cache.get(key)
        return hit[0] if hit and hit[1] > time.monotonic() else None

    def _check_key(key: str) -> bool:
        now = time.monotonic()
        with Session() as s:
            found = find_active_key_of(s, key, pipeline) if stable else find_active_key(s, key, service_id)
            ok = found is not None
        if len(key_cache) >= KEY_CACHE_MAX:  # random keys sprayed at the server must not grow memory
            key_cache.clear()
        key_cache[key] = (ok, now + KEY_CACHE_SECONDS)
        return ok

    async def key_ok(key: str) -> bool:
        ok = _cached_key(key)
        if ok is None:  # only a cache miss pays for a database read (off the event loop)
            ok = await run_in_threadpool(_check_key, key)
        return ok

    app.add_middleware(Gate, key_ok=key_ok)
    app.add_middleware(Measured, metrics=metrics)  # added last, so outermost: requests the gate refuses count too

    async def require_key(x_api_key: Annotated[str | None, Header(description="Your API key")] = None) -> str:
        if not x_api_key:
            raise HTTPException(
                401, "missing API key: send it in the X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
            )
        if not await key_ok(x_api_key):  # the Gate checked it already: a cache hit (it documents the header too)
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "X-API-Key"})
        return x_api_key

    Key = Annotated[str, Depends(require_key)]

    async def billing_key(
        key: Key,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                max_length=200,
                description="Any string naming this request: a retry with the same value is answered but billed once",
            ),
        ] = None,
    ) -> str | None:
        if not writer.alive():  # nothing could be billed: refuse before the model runs
            raise HTTPException(503, "usage cannot be recorded now, so no call is served; retry shortly")
        return idempotency_hash(key, idempotency_key) if idempotency_key else None

    Billing = Annotated[str | None, Depends(billing_key)]
    errors = {
        401: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    }

    def _too_large(v: Version, items: list[Any]) -> None:
        for i, item in enumerate(items):
            why = v.predictor.check_item(item)
            if why:
                raise HTTPException(413, why if len(items) == 1 else f"item {i}: {why}")

    async def _bill(v: Version, quantity: int, idempotency: str | None, host: Any, response: Response) -> None:
        try:
            await writer.record(quantity, idempotency, host, billing=v.billing)
        except Exception:
            raise HTTPException(503, "usage could not be recorded, so the call was not served; retry") from None
        if on_providers is not None:  # who answered: a host's id, or this gateway itself
            response.headers["X-Served-By"] = host.host_id if host is not None else "gateway"
        response.headers["X-Service-Id"] = v.service_id  # which version answered (and was billed)
        if v.number is not None:
            response.headers["X-Service-Version"] = str(v.number)

    Request_, Response_, Batch_ = predictor.Request, predictor.Response, predictor.BatchRequest

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        """Liveness and what this service is (on a stable endpoint: the live version); needs no API key."""
        v = live[0]
        return Health(
            status="ok",
            service_id=v.service_id,
            pipeline=pipeline,
            plan_hash=v.plan_hash,
            intents=list(v.predictor.manifest.get("labels", [])),
            version=v.number,
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE: {}}}, 401: {"model": ErrorBody}},
        tags=["service"],
    )
    async def metrics_route(
        authorization: Annotated[
            str | None, Header(description="`Bearer <metrics key>`, when the server was started with one")
        ] = None,
    ) -> Response:
        """Prometheus metrics: requests and errors by route and code, latency histogram, usage records written,
        the model answering (`aib_model_info`). Needs the server's metrics key when it has one, never an API key."""
        if not metrics_key_ok(metrics_key, authorization):
            raise HTTPException(
                401, "this server's metrics need its metrics key: send `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    def _prepare(v: Version, items: list[Any]) -> list[Any]:
        """Decode inputs that need it (images, audio) before the call is billed; a bad one is a 422."""
        prepare = getattr(v.predictor, "prepare", None)
        if prepare is None:
            return items
        out = []
        for i, item in enumerate(items):
            try:
                out.append(prepare(item))
            except BadItem as exc:
                raise HTTPException(422, str(exc) if len(items) == 1 else f"item {i}: {exc}") from None
        return out

    async def _predict(v: Version, items: list[Any]) -> tuple[list[Any], Any]:
        """The model's answers and the host that gave them (None: answered here); an input it cannot serve (BadItem,
        raised while predicting) is a 422, not a 500."""
        served = getattr(v.predictor, "predict_served", None)
        try:
            if served is not None:
                return await run_in_threadpool(served, items)
            return await run_in_threadpool(lambda: v.predictor.predict(_prepare(v, items))), None
        except BadItem as exc:
            raise HTTPException(422, str(exc)) from None

    async def _answer(item: dict[str, Any], response: Response, idempotency: str | None) -> Any:
        v = live[0]  # this request's version, to its end
        _too_large(v, [item])
        t0 = time.perf_counter()
        results, host = await _predict(v, [item])
        t1 = time.perf_counter()
        await _bill(v, 1, idempotency, host, response)
        response.headers["Server-Timing"] = _timing(t0, t1, time.perf_counter())
        return results[0]

    if getattr(predictor, "accepts_file", False):
        body_schema = Request_.model_json_schema()
        upload_schema = {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        upload_schema["required"] = ["file"]

        @app.post(
            "/v1/predict",
            response_model=Response_,
            responses={**errors, 415: {"model": ErrorBody}},
            tags=["predict"],
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": body_schema},
                        "multipart/form-data": {"schema": upload_schema},
                    },
                }
            },
        )
        async def predict_file(request: Request, bill_as: Billing, response: Response) -> Any:
            """Answer one input, sent as JSON or as a multipart upload in the field `file`. One metered call."""
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("multipart/form-data"):
                form = await request.form()
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise HTTPException(422, "send the file in the multipart field `file`")
                item: dict[str, Any] = {"file": await upload.read()}
            elif ctype.startswith("application/json"):
                try:
                    item = Request_.model_validate_json(await request.body()).model_dump()
                except PydanticValidationError as exc:
                    raise RequestValidationError(exc.errors()) from None
            else:
                raise HTTPException(
                    415, f"send JSON or a multipart upload (field `file`), not {ctype or 'a body without a type'}"
                )
            return await _answer(item, response, bill_as)

    else:

        @app.post("/v1/predict", response_model=Response_, responses=errors, tags=["predict"])
        async def predict(body: Request_, bill_as: Billing, response: Response) -> Any:  # type: ignore[valid-type]
            """Answer one input. Costs one metered call."""
            return await _answer(body.model_dump(), response, bill_as)

    class BatchResponse(BaseModel):
        results: list[Response_]  # type: ignore[valid-type]

    @app.post("/v1/predict/batch", response_model=BatchResponse, responses=errors, tags=["predict"])
    async def predict_batch(body: Batch_, bill_as: Billing, response: Response) -> Any:  # type: ignore[valid-type]
        """Answer many inputs in one call; metered as one call per input."""
        v = live[0]
        items = v.predictor.items_from_batch(body)
        if len(items) > max_batch:
            raise HTTPException(413, f"the batch has {len(items)} items; this service accepts at most {max_batch}")
        _too_large(v, items)
        t0 = time.perf_counter()
        results, host = await _predict(v, items)
        t1 = time.perf_counter()
        await _bill(v, len(items), bill_as, host, response)
        response.headers["Server-Timing"] = _timing(t0, t1, time.perf_counter())
        return {"results": results}

    metrics.routes = frozenset(route.path for route in app.routes)  # every route is known by now
    return app


def _log(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def _timing(start: float, inferred: float, billed: float) -> str:
    """A Server-Timing header value: model time and metering time in ms."""
    return f"inference;dur={(inferred - start) * 1e3:.2f}, metering;dur={(billed - inferred) * 1e3:.2f}"


def ensure_port_free(host: str, port: int) -> None:
    """ServeError with one sentence when `host:port` cannot be bound."""
    if not port_free(host, port):
        raise ServeError(f"port {port} on {host} is already in use; choose another with --port")


def serve(
    service_id: str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
    on_providers: dict[str, Any] | None = None, metrics_key: str | None = None,
) -> None:  # fmt: skip
    """Serve `service_id` with uvicorn until interrupted (`on_providers`: answered by hosts; `metrics_key`: what
    /metrics needs; see create_app)."""
    import uvicorn

    ensure_port_free(host, port)
    app = create_app(service_id, threads=threads, on_providers=on_providers, metrics_key=metrics_key)
    server = _quiet_server_class()(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    server.run()
    if server.stopped_by_signal:
        raise KeyboardInterrupt  # after a clean shutdown, so callers' `finally` stops what they started


def _quiet_server_class() -> type:
    import contextlib
    import signal
    import threading

    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn's Server, minus re-raising Ctrl-C inside the running event loop after shutdown (which
        cancels the lifespan task and prints two tracebacks); the signal is reported after run() instead."""

        stopped_by_signal = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.stopped_by_signal = True
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return QuietServer


__all__ = ["Gate", "create_app", "ensure_port_free", "serve"]
