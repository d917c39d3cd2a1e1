"""A served API's metrics: the quantile estimate against the true quantile, the summary, bounded labels, the key."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.service_metrics import (
    LATENCY_BUCKETS,
    Measured,
    ServiceMetrics,
    histogram_quantile,
    metrics_key_ok,
    summarise,
)


def metrics() -> ServiceMetrics:
    m = ServiceMetrics("svc_1", "faq-chatbot", "abc123", "1.0.0", "run_1")
    m.routes = frozenset({"/v1/predict", "/v1/predict/batch", "/health", "/metrics"})
    return m


def cumulative(samples: np.ndarray) -> list[tuple[float, float]]:
    bounds = [*LATENCY_BUCKETS, math.inf]
    return [(b, float(np.sum(samples <= b))) for b in bounds]


def bucket_of(value: float) -> tuple[float, float]:
    lower = 0.0
    for bound in LATENCY_BUCKETS:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.floats(min_value=1e-5, max_value=60.0), min_size=1, max_size=300),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_the_quantile_estimate_lies_in_the_bucket_of_the_true_quantile(samples, q):
    data = np.array(samples)
    true = float(np.quantile(data, q, method="inverted_cdf"))  # the smallest sample with a share >= q at or below it
    estimate = histogram_quantile(q, cumulative(data))
    lower, upper = bucket_of(true)
    if math.isinf(upper):  # past the last bound Prometheus answers the last bound: it cannot know more
        assert estimate == LATENCY_BUCKETS[-1]
    else:
        assert lower <= estimate <= upper, (true, estimate)


def test_the_quantile_is_exact_when_samples_spread_evenly_in_a_bucket():
    # 100 samples spread evenly over (0.01, 0.025]: linear interpolation is the true quantile there.
    data = np.linspace(0.01, 0.025, 101)[1:]
    assert histogram_quantile(0.5, cumulative(data)) == pytest.approx(np.quantile(data, 0.5), abs=2e-4)
    assert histogram_quantile(0.5, cumulative(np.array([]))) is None


def test_the_summary_counts_requests_errors_latency_records_and_the_model():
    m = metrics()
    for _ in range(8):
        m.observe("/v1/predict", "POST", 200, 0.004)
    m.observe("/v1/predict", "POST", 401, 0.0005)
    m.observe("/v1/predict/batch", "POST", 422, 0.001)
    m.observe("/health", "GET", 200, 0.0002)
    m.observe("/nope", "GET", 404, 0.0002)
    m.usage_written(records=3, calls=9)
    m.usage_written(records=1, calls=1)
    s = summarise(m.exposition().decode())
    assert (s["requests"], s["errors"], s["errors_by_code"]) == (12, 3, {"401": 1, "404": 1, "422": 1})
    assert (s["predict_requests"], s["predict_errors"]) == (10, 2)
    assert s["predict_error_rate"] == pytest.approx(0.2) and s["error_rate"] == pytest.approx(0.25)
    assert (s["usage_records_written"], s["billed_calls"]) == (4, 10)
    assert s["model"] == {
        "service_id": "svc_1", "pipeline": "faq-chatbot", "plan_hash": "abc123", "version": "1.0.0", "run_id": "run_1",
    }  # fmt: skip
    # 8 of the 10 prediction calls took 4 ms: the median is in (2.5 ms, 5 ms], the p99 too; no route leaks in.
    assert 2.5 < s["latency_ms"]["p50"] <= 5.0 and 2.5 < s["latency_ms"]["p99"] <= 5.0
    assert s["latency_ms"]["p50"] >= 0.1  # /health's 0.2 ms is not a prediction call


def test_random_paths_and_methods_never_add_label_values():
    m = metrics()
    m.observe("/spray/first", "BREW", 404, 0.001)
    after_one = m.exposition().count(b"\n")
    for i in range(499):
        m.observe(f"/spray/{i}/../../etc/passwd", f"X{i}", 404, 0.001)
    text = m.exposition().decode()
    assert "spray" not in text and "X1" not in text
    assert text.count("\n") == after_one  # one 'other' series set, however many paths and methods
    assert summarise(text)["errors_by_code"] == {"404": 500}


def test_two_servers_in_one_process_keep_their_own_counts():
    a, b = metrics(), metrics()
    a.observe("/v1/predict", "POST", 200, 0.001)
    assert summarise(a.exposition().decode())["requests"] == 1
    assert summarise(b.exposition().decode())["requests"] == 0


@pytest.mark.parametrize(
    ("expected", "header", "ok"),
    [
        (None, None, True),
        ("s3cret-metrics-key-0123", None, False),
        ("s3cret-metrics-key-0123", "Bearer s3cret-metrics-key-0123", True),
        ("s3cret-metrics-key-0123", "bearer s3cret-metrics-key-0123", True),
        ("s3cret-metrics-key-0123", "Bearer s3cret-metrics-key-012", False),
        ("s3cret-metrics-key-0123", "Basic s3cret-metrics-key-0123", False),
        ("s3cret-metrics-key-0123", "s3cret-metrics-key-0123", False),
        ("s3cret-metrics-key-0123", "Bearer ", False),
    ],
)
def test_the_metrics_key_is_needed_exactly_when_one_is_set(expected, header, ok):
    assert metrics_key_ok(expected, header) is ok


def asgi_call(layer: Measured, path: str = "/v1/predict") -> None:
    scope = {"type": "http", "path": path, "method": "POST", "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    asyncio.run(layer(scope, receive, send))


def test_an_exception_nothing_handled_counts_as_a_500_and_nothing_stays_in_flight():
    m = metrics()

    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    async def streamed(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    with pytest.raises(RuntimeError):
        asgi_call(Measured(broken, m))
    asgi_call(Measured(streamed, m))
    s = summarise(m.exposition().decode())
    assert (s["requests"], s["errors_by_code"]) == (2, {"500": 1})  # the streamed answer counted once
    assert m.in_flight._value.get() == 0
