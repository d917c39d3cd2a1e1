"""A served API's own metrics in Prometheus's text format (`GET /metrics`): requests and errors by route and status
code, a latency histogram, usage records written, and which model answers; and their summary for people (latency
percentiles, error rates), which the Services page shows.

Label values come only from closed sets (the app's own routes, the HTTP methods, status codes): a stranger spraying
random paths or methods adds to `route="other"`, never a new series, so the scrape cannot be grown without bound."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

# Seconds; a service answers in a millisecond (a FAQ) to seconds (a big batch of audio).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
PREDICT_ROUTES = ("/v1/predict", "/v1/predict/batch")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The metrics of one served app, in a registry of its own (two services in one process never mix)."""

    def __init__(self, service_id: str, pipeline: str, plan_hash: str, version: str, run_id: str) -> None:
        self.registry = CollectorRegistry()
        self.routes: frozenset[str] = frozenset()
        r = self.registry
        self.requests = Counter(
            "aib_http_requests", "HTTP requests answered, by route, method and status code",
            ["route", "method", "code"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "aib_http_errors", "Requests answered with an error status (4xx, 5xx), by route and code",
            ["route", "code"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "aib_http_request_duration_seconds", "Time from a request's arrival to the last byte of its answer",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("aib_http_requests_in_flight", "Requests being answered now", registry=r)
        self.usage_records = Counter(
            "aib_usage_records_written", "Usage records committed to the ledger (one per billed request)", registry=r
        )
        self.billed_calls = Counter(
            "aib_billed_calls", "Calls billed in those records (a batch is billed one call per input)", registry=r
        )
        self.model = Gauge(
            "aib_model_info", "The model this server answers with (always 1; its labels say which)",
            ["service_id", "pipeline", "plan_hash", "version", "run_id"], registry=r,
        )  # fmt: skip
        self.set_model(service_id, pipeline, plan_hash, version, run_id)

    def set_model(self, service_id: str, pipeline: str, plan_hash: str, version: str, run_id: str) -> None:
        """Name the model answering now (a stable endpoint switches it when a version is promoted)."""
        self.model.clear()
        self.model.labels(service_id, pipeline, plan_hash, version, run_id).set(1)

    def route_of(self, path: str) -> str:
        """The route label of a request path: one of the app's routes, else 'other'."""
        return path if path in self.routes else OTHER

    def observe(self, path: str, method: str, code: int, seconds: float) -> None:
        """Count one answered request."""
        route = self.route_of(path)
        method = method if method in METHODS else OTHER
        self.requests.labels(route, method, str(code)).inc()
        if code >= 400:
            self.errors.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def usage_written(self, records: int, calls: int) -> None:
        """Count usage records the writer committed, and the calls they bill."""
        self.usage_records.inc(records)
        self.billed_calls.inc(calls)

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)


class Measured:
    """ASGI layer around everything else (the key gate included): every request, refused or answered, is counted
    with the status code the client got and the time until the last byte of its answer."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: list[int] = []
        counted = False

        def count(code: int) -> None:
            nonlocal counted
            if not counted:
                counted = True
                self.metrics.observe(scope["path"], scope["method"], code, time.perf_counter() - start)

        async def measured_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                count(status[0] if status else 500)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, measured_send)
        except BaseException:
            count(status[0] if status else 500)  # the server answers 500 for an exception nothing handled
            raise
        finally:
            self.metrics.in_flight.dec()
            if status and not counted:  # the client went away before the end of the answer
                count(status[0])


def metrics_key_ok(expected: str | None, authorization: str | None) -> bool:
    """Whether a scrape may read /metrics: any when no metrics key is set, else only `Authorization: Bearer KEY`
    (compared in constant time)."""
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile estimated from cumulative histogram buckets [(upper bound, count), … (inf, total)] as
    Prometheus's histogram_quantile() does: linear within the bucket it falls in (the first bucket from 0); in the
    +Inf bucket, the highest finite bound. None when nothing was observed."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = (bound if not math.isinf(bound) else lower_bound), count
    return lower_bound


def summarise(text: str, routes: Iterable[str] = PREDICT_ROUTES) -> dict[str, Any]:
    """What a scrape says to a person: requests and errors (all routes, and the prediction `routes`), error rate,
    errors by code, latency p50/p95/p99 in ms over `routes`, usage records written, billed calls, the model."""
    routes = set(routes)
    requests = errors = predict_requests = predict_errors = 0.0
    by_code: dict[str, float] = {}
    buckets: dict[float, float] = {}
    out: dict[str, Any] = {"usage_records_written": 0, "billed_calls": 0, "model": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "aib_http_requests_total":
                requests += value
                if labels.get("route") in routes:
                    predict_requests += value
            elif name == "aib_http_errors_total":
                errors += value
                by_code[labels["code"]] = by_code.get(labels["code"], 0) + value
                if labels.get("route") in routes:
                    predict_errors += value
            elif name == "aib_http_request_duration_seconds_bucket" and labels.get("route") in routes:
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0) + value
            elif name == "aib_usage_records_written_total":
                out["usage_records_written"] = int(value)
            elif name == "aib_billed_calls_total":
                out["billed_calls"] = int(value)
            elif name == "aib_model_info":
                out["model"] = dict(labels)
    pairs = sorted(buckets.items())

    def ms(q: float) -> float | None:
        value = histogram_quantile(q, pairs)
        return None if value is None else value * 1e3

    out.update(
        requests=int(requests),
        errors=int(errors),
        error_rate=errors / requests if requests else 0.0,
        errors_by_code={code: int(n) for code, n in sorted(by_code.items())},
        predict_requests=int(predict_requests),
        predict_errors=int(predict_errors),
        predict_error_rate=predict_errors / predict_requests if predict_requests else 0.0,
        latency_ms={"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99)},
    )
    return out


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "Measured",
    "ServiceMetrics",
    "histogram_quantile",
    "metrics_key_ok",
    "summarise",
]
